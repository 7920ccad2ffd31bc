"""xception-export --format mms writes a Multi Model Server archive holding the checkpoint
as it is; every format refuses what cannot work in one line, writing nothing."""
import json
import os
import zipfile

import pytest

from conftest import PHOTOS, assert_bad_input, run_tool
from xception_mx.atomic import sha256_file


@pytest.fixture(scope="module")
def nested(converted):
    return converted["nested"][1]


def test_the_archive_holds_the_checkpoint_its_service_and_settings(nested, tmp_path):
    labels = tmp_path / "names.txt"
    labels.write_text("apple\nbanana\ncherry\ndate\nelder\nfig\n")
    out = tmp_path / "store" / "fruit.mar"
    result = run_tool("xception-export", nested, "--format", "mms", "-o", out, "--top", "2",
                      "--labels", labels, "--transform", "load_img")
    assert result.returncode == 0, result.stderr
    assert "fruit.mar: Multi Model Server archive" in result.stdout
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert names == {"MAR-INF/MANIFEST.json", "xception_mms_handler.py",
                         "xception-serving.json", "model-symbol.json", "model-0000.params",
                         "model-meta.json", "model-labels.txt"}
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"] == {"modelName": "fruit", "handler":
                                     "xception_mms_handler:handle"}
        assert manifest["runtime"] == "python3"
        config = json.loads(archive.read("xception-serving.json"))
        assert config == {"prefix": "model", "precision": "auto", "top": 2,
                          "transform": "load_img", "batch_size": 1}
        assert archive.read("model-labels.txt") == labels.read_bytes()
        archive.extract("model-0000.params", tmp_path / "x")
    assert sha256_file(tmp_path / "x" / "model-0000.params") == \
        sha256_file(nested + "-0000.params")
    assert sorted(os.listdir(tmp_path / "store")) == ["fruit.mar"]     # no work files left


@pytest.mark.parametrize("flags, says", [
    (["-o", "{tmp}/x.zip"], "an MMS archive is a .mar file"),
    (["-o", "{tmp}/-bad name.mar"], "must start with a letter or digit"),
    (["-o", "{tmp}/new/sub/m.mar", "--precision", "int8"],
     "--precision int8 needs --calib-images"),
    (["-o", "{tmp}/m.mar", "--calib-images", PHOTOS[0]], "--calib-images calibrates int8"),
    (["-o", "{tmp}/m.mar", "--labels", "{tmp}/two.txt"], "2 labels for a model with 6 classes"),
    (["-o", "{tmp}/m.mar", "--epoch", "3"], "of --epoch 3"),
    (["-o", "{tmp}/m.mar", "--top", "0"], "--top must be >= 1"),
    (["-o", "{tmp}/m.onnx", "--format", "onnx", "--precision", "bf16"],
     "--format onnx writes the fp32 network"),
    (["-o", "{tmp}/m.onnx", "--format", "onnx", "--top", "3"],
     "--top: only --format mms/sagemaker takes it"),
    (["-o", "{tmp}/m.onnx", "--format", "onnx", "--calib-images", PHOTOS[0]],
     "--calib-images: only --format mms/sagemaker"),
    (["-o", "{tmp}/m.mar", "--check-images", PHOTOS[0]],
     "--check-images: only --format onnx takes it"),
    (["-o", "{tmp}/m.pb", "--format", "onnx"], "-o {tmp}/m.pb: an ONNX model is a .onnx file"),
    (["-o", "{tmp}/m.onnx", "--format", "onnx", "--labels", "{tmp}/two.txt"],
     "2 labels for a model with 6 classes"),
    (["-o", "{tmp}/m.onnx", "--format", "onnx", "--check-images", "{tmp}/none.jpg"],
     "none.jpg"),
    (["-o", "{tmp}/model.tgz", "--format", "sagemaker"], "a SageMaker model is a .tar.gz file"),
    (["-o", "{tmp}/new/model.tar.gz", "--format", "sagemaker", "--precision", "int8"],
     "--precision int8 needs --calib-images"),
    (["-o", "{tmp}/model.tar.gz", "--format", "sagemaker", "--batch-size", "4"],
     "--batch-size: only --format mms takes it"),
])
def test_what_cannot_work_is_refused_in_one_line_and_nothing_is_written(nested, tmp_path,
                                                                        flags, says):
    (tmp_path / "two.txt").write_text("a\nb\n")
    flags = [f.format(tmp=tmp_path) for f in flags]
    before = set(os.listdir(tmp_path))
    mms = [] if "--format" in flags else ["--format", "mms"]
    assert_bad_input(run_tool("xception-export", nested, *mms, *flags),
                     says.format(tmp=tmp_path))
    assert set(os.listdir(tmp_path)) == before


def test_a_missing_checkpoint_or_an_existing_archive_is_refused(nested, tmp_path):
    assert_bad_input(run_tool("xception-export", tmp_path / "none", "--format", "mms", "-o",
                              tmp_path / "m.mar"), "none-symbol.json: no such file")
    assert not (tmp_path / "m.mar").exists()
    (tmp_path / "m.mar").write_bytes(b"old")
    assert_bad_input(run_tool("xception-export", nested, "--format", "mms", "-o",
                              tmp_path / "m.mar"), "m.mar: already exists; pass --force")
    assert (tmp_path / "m.mar").read_bytes() == b"old"
    result = run_tool("xception-export", nested, "--format", "mms", "-o", tmp_path / "m.mar",
                      "--force")
    assert result.returncode == 0, result.stderr
    assert zipfile.is_zipfile(tmp_path / "m.mar")
