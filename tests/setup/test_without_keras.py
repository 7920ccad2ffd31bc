"""A converter-only install (no ``[validate]`` extra): the tools that need Keras say in one
line which extra to install.  Keras and TensorFlow are hidden by packages of those names that
fail to import, first on the path, as a missing module fails."""
import os

import pytest

from conftest import ROOT, assert_bad_input, run_tool

MISSING = "raise ModuleNotFoundError(\"No module named '{0}'\", name='{0}')\n"
EXTRA = ("Keras' side needs Keras 3 and TensorFlow, which this installation lacks (No module "
         "named 'keras'): install the validate extra, pip install -c constraints.txt "
         "'xception-mx[validate]'")


@pytest.fixture
def without_keras(tmp_path):
    for name in ("keras", "tensorflow", "tf_keras"):
        (tmp_path / "hidden" / name).mkdir(parents=True)
        (tmp_path / "hidden" / name / "__init__.py").write_text(MISSING.format(name))
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "hidden"), ROOT])}


def test_tools_that_need_keras_name_the_extra_to_install(base, keras_files_top, without_keras,
                                                         tmp_path):
    back = run_tool("mxnet2keras", base / "x71", "-o", tmp_path / "back.keras",
                    env=without_keras)
    assert_bad_input(back, EXTRA)
    assert not (tmp_path / "back.keras").exists()
    parity = run_tool("xception-parity", "--keras", keras_files_top["legacy-h5"], "--mxnet",
                      base / "x71", "--random", "1", env=without_keras)
    assert_bad_input(parity, EXTRA)
    assert "Keras 2" not in parity.stderr


def test_a_users_own_model_without_keras_is_not_blamed_on_the_file(converted, without_keras):
    path, prefix = converted["nested"]
    parity = run_tool("xception-parity", "--keras", path, "--mxnet", prefix, "--random", "1",
                      env=without_keras)
    assert_bad_input(parity, EXTRA)
    assert "cannot load this model" not in parity.stderr


def test_the_converter_and_predict_need_no_keras(base, keras_files_top, without_keras,
                                                 tmp_path):
    converted = run_tool("keras2mxnet", keras_files_top["legacy-h5"], "-o", tmp_path / "x",
                         "--input-shape", "71", "71", env=without_keras)
    assert converted.returncode == 0, converted.stderr
    predicted = run_tool("xception-predict", tmp_path / "x",
                         os.path.join(ROOT, "tests", "data", "coffee.jpg"), "--top", "1",
                         env=without_keras)
    assert predicted.returncode == 0, predicted.stderr
