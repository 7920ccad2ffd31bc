"""keras2mxnet from the command line: it converts, or it says exactly what is
wrong in one line on stderr, exits 2, and writes nothing."""
import json
import os
import shutil
import zipfile

import mxnet as mx
import numpy as np
import pytest

import keras_files
from conftest import run_tool
from xception_mx import keras_side
from xception_mx.atomic import sha256_file


def files_under(directory):
    """Every file and folder below ``directory``."""
    return sorted(os.path.relpath(os.path.join(root, f), directory)
                  for root, dirs, names in os.walk(directory) for f in names + dirs)


def assert_clean_failure(result, out_dir, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keras2mxnet: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""
    assert not os.path.exists(out_dir) or files_under(out_dir) == []


@pytest.fixture
def out(tmp_path):
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def test_converts_and_writes_a_complete_checkpoint(keras_files_top, out):
    src = keras_files_top["legacy-h5"]
    result = run_tool("keras2mxnet", src, "-o", out / "new" / "xception", "--input-shape", "224",
                      "240", "--epoch", "3")
    assert result.returncode == 0, result.stderr
    assert files_under(out) == ["new", "new/xception-0003.params", "new/xception-meta.json",
                                "new/xception-symbol.json"]
    meta = json.loads((out / "new" / "xception-meta.json").read_text())
    assert meta["source"]["path"] == os.path.abspath(src)
    assert len(meta["source"]["sha256"]) == 64
    assert meta["source"]["keras_version"] and meta["source"]["backend"] == "tensorflow"
    assert meta["model"] == {"include_top": True, "classes": 1000, "pooling": None,
                             "classifier_activation": "softmax", "input_shape": [224, 240],
                             "channels": 3}
    assert meta["input"]["scale"] == "x / 127.5 - 1" and meta["input"]["shape"] == [1, 3, 224,
                                                                                    240]
    assert meta["input"]["color"] == "RGB"
    assert len(meta["name_table"]) == 236
    assert "wrote" in result.stdout and "verified" in result.stdout


def test_default_weights_come_from_keras_models_folder(keras_files_top, tmp_path):
    models = tmp_path / "keras_home" / "models"
    models.mkdir(parents=True)
    shutil.copy(keras_files_top["keras2-h5"],
                models / "xception_weights_tf_dim_ordering_tf_kernels.h5")
    env_home = str(tmp_path / "keras_home")
    result = _run_with_env("keras2mxnet", {"KERAS_HOME": env_home}, "-o",
                           tmp_path / "std", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "std-0000.params").exists()


def test_no_weights_anywhere_says_how_to_get_them(tmp_path):
    result = _run_with_env("keras2mxnet", {"KERAS_HOME": str(tmp_path / "empty")}, cwd=tmp_path)
    assert_clean_failure(result, tmp_path,           # the folder it would have written to
                         "xception_weights_tf_dim_ordering_tf_kernels.h5",
                         "keras.applications.Xception()")


def _run_with_env(name, env, *args, cwd=None):
    import subprocess
    import sys
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), name)]
                          + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=600)


def test_print_name_table_writes_nothing(keras_files_top, out):
    result = run_tool("keras2mxnet", keras_files_top["keras1-h5"], "--print-name-table",
                      cwd=out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split("\t")[:3] == ["keras_layer", "keras_weight", "found_by"]
    assert len(lines) == 237
    row = next(l.split("\t") for l in lines if l.startswith("block2_residual_conv\t"))
    assert row[2:6] == ["shape", "convolution2d_1", "block2_residual_conv_weight",
                        "conv_kernel"]
    assert files_under(out) == []


def test_missing_file(out):
    result = run_tool("keras2mxnet", out / "nope.h5", "-o", out / "new" / "x")
    assert_clean_failure(result, out, "nope.h5", "no such file")


def test_empty_file(tmp_path, out):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert_clean_failure(run_tool("keras2mxnet", empty, "-o", out / "x"), out, "empty.h5",
                         "empty")


@pytest.mark.parametrize("fmt", ["legacy-h5", "keras"])
def test_truncated_file(fmt, keras_files_top, tmp_path, out):
    data = open(keras_files_top[fmt], "rb").read()
    truncated = tmp_path / ("truncated" + keras_side.SUFFIX[fmt])
    truncated.write_bytes(data[:len(data) // 2])
    assert_clean_failure(run_tool("keras2mxnet", truncated, "-o", out / "new" / "x"), out,
                         str(truncated), "truncated")


def test_file_that_is_neither_hdf5_nor_zip(tmp_path, out):
    text = tmp_path / "notes.h5"
    text.write_text("these are not weights\n" * 100)
    assert_clean_failure(run_tool("keras2mxnet", text, "-o", out / "x"), out, "notes.h5",
                         "expected HDF5", ".keras zip")


def test_zip_that_is_not_a_keras_archive(tmp_path, out):
    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    assert_clean_failure(run_tool("keras2mxnet", archive, "-o", out / "x"), out, "model.keras",
                         "model.weights.h5")


def test_savedmodel_folder_says_to_save_a_keras_file(tmp_path, out):
    import own_models
    tf_keras = own_models.import_tf_keras()
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
    folder = tmp_path / "exported_model"
    model.save(str(folder), save_format="tf")          # TF 2.x's default before 2.13
    assert (folder / "saved_model.pb").is_file()
    assert_clean_failure(run_tool("keras2mxnet", folder, "-o", out / "x"), out,
                         "exported_model", "SavedModel", "model.save('model.keras')")


def test_weights_of_another_architecture(keras_dir, out):
    keras = keras_side.import_keras()
    resnet = keras_side.save_keras(keras.applications.ResNet50(weights=None),
                                   str(keras_dir / "resnet50.h5"), "legacy-h5")
    assert_clean_failure(run_tool("keras2mxnet", resnet, "-o", out / "x"), out, "resnet50.h5",
                         "not Keras Xception", "conv1_conv")


def test_tensor_with_a_wrong_shape(keras_files_top, tmp_path, out):
    bad = tmp_path / "bad_shape.h5"
    shutil.copy(keras_files_top["legacy-h5"], bad)
    keras_files.replace_dataset(str(bad), "block3_sepconv1/block3_sepconv1/pointwise_kernel",
                                np.zeros((1, 1, 128, 255), np.float32))
    assert_clean_failure(run_tool("keras2mxnet", bad, "-o", out / "x"), out, "bad_shape.h5",
                         "block3_sepconv1", "pointwise_kernel", "1x1x128x256", "1x1x128x255")


def test_notop_file_asked_for_a_classifier(keras_file_notop, out):
    result = run_tool("keras2mxnet", keras_file_notop, "-o", out / "x",
                      "--classifier-activation", "none")
    assert_clean_failure(result, out, "notop", "--classifier-activation")


def test_existing_output_needs_force(keras_files_top, keras_file_10_classes, out):
    src = keras_files_top["weights-h5"]
    assert run_tool("keras2mxnet", src, "-o", out / "x").returncode == 0
    before = {f: (out / f).read_bytes() for f in files_under(out)}
    result = run_tool("keras2mxnet", keras_file_10_classes[0], "-o", out / "x")
    assert result.returncode == 2 and "x-symbol.json: already exists" in result.stderr
    assert "--force" in result.stderr and "Traceback" not in result.stderr
    assert {f: (out / f).read_bytes() for f in files_under(out)} == before
    forced = run_tool("keras2mxnet", keras_file_10_classes[0], "-o", out / "x", "--force")
    assert forced.returncode == 0, forced.stderr
    after = {f: (out / f).read_bytes() for f in files_under(out)}
    assert sorted(after) == sorted(before)                  # the same three files ...
    assert all(after[f] != before[f] for f in after)        # ... each one replaced
    saved = mx.nd.load(str(out / "x-0000.params"))
    assert saved["arg:predictions_weight"].shape == (10, 2048)
    assert json.loads((out / "x-meta.json").read_text())["files"]["params"]["sha256"] == \
        sha256_file(str(out / "x-0000.params"))


def test_unwritable_output_directory(keras_files_top, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_tool("keras2mxnet", keras_files_top["legacy-h5"], "-o", blocker / "x")
    assert_clean_failure(result, tmp_path / "none", "cannot write to the output directory")
    assert files_under(tmp_path) == ["a_file"]


@pytest.mark.parametrize("flags, fragment", [
    (["--input-shape", "64", "299"], "--input-shape"),
    (["--pooling", "avg"], "--pooling"),
    (["--epoch", "-1"], "--epoch"),
    (["--classifier-activation", "relu"], "--classifier-activation"),
])
def test_bad_flags(flags, fragment, keras_files_top, out):
    result = run_tool("keras2mxnet", keras_files_top["legacy-h5"], "-o", out / "x", *flags)
    assert_clean_failure(result, out, fragment)


def test_labels_file_is_written_beside_the_checkpoint_and_names_the_predictions(
        keras_file_10_classes, out, tmp_path):
    names = ["fruit %d" % i for i in range(10)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    result = run_tool("keras2mxnet", keras_file_10_classes[0], "-o", out / "x", "--labels",
                      tmp_path / "names.txt")
    assert result.returncode == 0, result.stderr
    assert (out / "x-labels.txt").read_text().splitlines() == names
    assert str(out / "x-labels.txt") in result.stdout
    predicted = run_tool("xception-predict", out / "x", os.path.join(
        os.path.dirname(__file__), "..", "data", "chelsea_cat.jpg"), "--top", "3")
    assert predicted.returncode == 0, predicted.stderr
    shown = [line for line in predicted.stdout.splitlines() if "fruit " in line]
    assert len(shown) == 3 and "class " not in predicted.stdout, predicted.stdout


def test_a_labels_file_that_does_not_fit_the_model_is_refused_before_writing(
        keras_file_10_classes, keras_file_notop, out, tmp_path):
    (tmp_path / "nine.txt").write_text("\n".join("c%d" % i for i in range(9)) + "\n")
    result = run_tool("keras2mxnet", keras_file_10_classes[0], "-o", out / "x", "--labels",
                      tmp_path / "nine.txt")
    assert_clean_failure(result, out, "--labels", "9 names for a model with 10 classes")
    result = run_tool("keras2mxnet", keras_file_notop, "-o", out / "x", "--labels",
                      tmp_path / "nine.txt")
    assert_clean_failure(result, out, "outputs no class scores (features)")
    result = run_tool("keras2mxnet", keras_file_10_classes[0], "-o", out / "x", "--labels",
                      tmp_path / "none.txt")
    assert_clean_failure(result, out, "none.txt", "cannot read labels file")
