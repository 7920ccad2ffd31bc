"""xception-export --format sagemaker writes the model.tar.gz SageMaker's MXNet inference
containers load: unpacked and run as a container runs it (its own copy of xception-mx,
``code/inference.py`` directly and through the inference toolkit's handler service), it
answers real photos as xception-predict does, and a bad request gets its 4xx."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from conftest import PHOTOS, run_tool
from export_checkpoints import assert_same_classes, predicted
from shapes_dataset import CLASSES

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sagemaker_driver.py")


def exported(prefix, folder, *flags):
    """The model exported to ``folder/model.tar.gz`` and unpacked into ``folder/model``."""
    out = folder / "model.tar.gz"
    result = run_tool("xception-export", prefix, "--format", "sagemaker", "-o", out, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    with tarfile.open(out) as archive:
        archive.extractall(folder / "model", filter="data")
    return folder / "model"


def served(model_dir, how, requests, tmp_path):
    """``(package file, answers)`` of ``sagemaker_driver.py``; ``requests``:
    ``[(body file, content type, accept)]``."""
    listed = tmp_path / "requests.json"
    listed.write_text(json.dumps([[str(b), c, a] for b, c, a in requests]))
    result = subprocess.run([sys.executable, DRIVER, str(model_dir), how, str(listed)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    return printed["package"], printed["answers"]


@pytest.mark.parametrize("name", ["demo", "transfer", "gray", "multi"])
def test_the_model_answers_as_xception_predict_prints(checkpoints, name, tmp_path):
    model_dir = exported(checkpoints[name], tmp_path)
    package, answers = served(model_dir, "direct",
                              [(p, "application/x-image", "application/json") for p in PHOTOS],
                              tmp_path)
    assert package.startswith(str(model_dir / "code" / "xception_mx"))   # its own copy
    expected = predicted(checkpoints[name])
    for (status, kind, text), photo in zip(answers, PHOTOS):
        assert (status, kind) == (200, "application/json"), text
        answer = json.loads(text)
        if name == "multi":
            assert sorted(answer["outputs"]) == sorted(expected[photo]["outputs"])
        else:
            assert_same_classes(answer["top"], expected[photo]["top"])
    if name == "transfer":
        assert {n for n, _ in answer["top"]} == set(CLASSES)


def test_the_inference_toolkit_serves_it_and_bad_requests_get_their_status(checkpoints,
                                                                          tmp_path):
    model_dir = exported(checkpoints["transfer"], tmp_path, "--top", "2")
    (tmp_path / "text.txt").write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(open(PHOTOS[0], "rb").read()[:3000])
    package, answers = served(model_dir, "toolkit", [
        (PHOTOS[0], "image/jpeg", None),
        (PHOTOS[1], "image/jpeg", "text/csv"),
        (tmp_path / "text.txt", "text/plain", None),
        (tmp_path / "text.txt", "application/x-image", None),
        (truncated, "image/jpeg", "application/json"),
        (PHOTOS[2], "application/octet-stream", "*/*"),
        (PHOTOS[3], "image/jpeg", "text/html, application/*;q=0.9")], tmp_path)
    assert package.startswith(str(model_dir / "code"))
    expected = predicted(checkpoints["transfer"], "--top", "2")
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 406, 415, 400, 400, 200, 200], answers
    assert_same_classes(json.loads(answers[0][2])["top"], expected[PHOTOS[0]]["top"])
    assert_same_classes(json.loads(answers[5][2])["top"], expected[PHOTOS[2]]["top"])
    assert answers[0][1] == "application/json"
    assert "accept text/csv: the answer is application/json" in answers[1][2]
    assert "content type text/plain: expected an image" in answers[2][2]
    assert "not an image format Pillow knows" in answers[3][2]
    assert "a truncated JPEG" in answers[4][2]


def test_the_archive_holds_the_checkpoint_under_the_containers_names(checkpoints, tmp_path):
    model_dir = exported(checkpoints["gray"], tmp_path)
    top = set(os.listdir(model_dir))
    assert top == {"model-symbol.json", "model-0000.params", "model-shapes.json",
                   "model-meta.json", "xception-serving.json", "code"}
    shapes = json.loads((model_dir / "model-shapes.json").read_text())
    assert shapes == [{"name": "data", "shape": [1, 1, 80, 90]}]
    code = set(os.listdir(model_dir / "code"))
    assert code == {"inference.py", "requirements.txt", "xception_mx"}
    assert "simplejpeg" in (model_dir / "code" / "requirements.txt").read_text()
    assert not [f for _, _, files in os.walk(model_dir) for f in files if f.endswith(".pyc")]


def test_the_containers_python_can_read_the_package(tmp_path, checkpoints):
    """SageMaker's last MXNet containers run Python 3.8: the copy must parse there (on any
    machine; the next test runs it where a Python 3.8 is installed)."""
    import ast
    model_dir = exported(checkpoints["gray"], tmp_path)
    for folder, _, files in os.walk(model_dir / "code"):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as f:
                    ast.parse(f.read(), name, feature_version=(3, 8))


# What SageMaker's MXNet 1.9 inference container holds (Python 3.8, MXNet, numpy, Pillow),
# with code/requirements.txt's packages, at versions the package index has for Python 3.8
CONTAINER_PACKAGES = ("mxnet==1.9.1", "numpy==1.23.5", "pillow==10.4.0", "simplejpeg==1.7.3",
                      "tqdm==4.70.1")


def python38():
    """A Python 3.8 that runs (pyenv's shim of one that is not selected does not), or None."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for path in candidates + [shutil.which("python3.8")]:
        if path and subprocess.run([path, "-c", "pass"], capture_output=True).returncode == 0:
            return path
    return None


@pytest.mark.skipif(python38() is None, reason="no Python 3.8 here (SageMaker's MXNet "
                    "containers' Python): the package's syntax is still checked above")
def test_the_model_runs_on_the_containers_python(checkpoints, tmp_path):
    venv = tmp_path / "container"
    subprocess.run([python38(), "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                                *CONTAINER_PACKAGES], capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    model_dir = exported(checkpoints["transfer"], tmp_path)
    listed = tmp_path / "requests.json"
    listed.write_text(json.dumps([[p, "image/jpeg", "application/json"] for p in PHOTOS]))
    result = subprocess.run([str(venv / "bin" / "python"), DRIVER, str(model_dir), "direct",
                             str(listed)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])["answers"]
    expected = predicted(checkpoints["transfer"])
    for (status, _, text), photo in zip(answers, PHOTOS):
        assert status == 200, text
        assert_same_classes(json.loads(text)["top"], expected[photo]["top"])
