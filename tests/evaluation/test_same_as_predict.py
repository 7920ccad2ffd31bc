"""xception-evaluate scores an image as xception-predict predicts it: by default both bring
images to the input size as Keras' ``image_dataset_from_directory`` does, and each report
says so (before, predict resized and evaluate cropped the centre, so one photo could be a
knife in one and a spoon in the other)."""
import json
import shutil

import numpy as np
import pytest

import xception_mx as xm
from conftest import PHOTOS, run_tool

SIZE = (96, 96)
NAMES = ["c%d" % i for i in range(10)]


@pytest.fixture(scope="module")
def ten(keras_file_10_classes, tmp_path_factory):
    keras_file, _ = keras_file_10_classes
    root = tmp_path_factory.mktemp("same")
    (root / "names.txt").write_text("\n".join(NAMES) + "\n")
    prefix = str(root / "ten")
    xm.convert(keras_file, prefix, input_shape=SIZE, labels=str(root / "names.txt"))
    return prefix


def predicted(prefix, *options):
    result = run_tool("xception-predict", prefix, *PHOTOS, "--top", 1, "--json", *options)
    assert result.returncode == 0, result.stderr
    return {row["image"]: row["top"][0] for row in map(json.loads, result.stdout.splitlines())}, \
        result.stderr


def wrongly_filed(predictions, root):
    """Each photo in the class folder after the one predict gives it: every image is
    misclassified, so evaluate's report gives its predicted class and probability."""
    where = {}
    for path, (name, _) in predictions.items():
        folder = root / NAMES[(NAMES.index(name) + 1) % len(NAMES)]
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / path.rsplit("/", 1)[-1]
        shutil.copy(path, copy)
        where[str(copy)] = path
    return where


@pytest.mark.parametrize("transform", [None, "crop"])
def test_evaluate_predicts_each_image_as_predict_does(ten, tmp_path, transform):
    options = [] if transform is None else ["--transform", transform]
    predictions, said = predicted(ten, *options)
    shown = transform or "keras"
    assert said.strip().splitlines()[-1].startswith("images: --transform %s: " % shown), said
    where = wrongly_filed(predictions, tmp_path / "data")
    result = run_tool("xception-evaluate", ten, tmp_path / "data", "--workers", 0,
                      "--report", tmp_path / "report.json", *options)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["top1"] == 0.0
    assert len(report["misclassified"]) == len(PHOTOS)
    for wrong in report["misclassified"]:
        name, probability = predictions[where[wrong["path"]]]
        assert wrong["predicted"] == name
        assert abs(wrong["probability"] - probability) < 1e-5, (wrong, probability)
    assert report["transform"] == shown and "images: --transform %s: " % shown in result.stdout


def test_the_transforms_give_other_probabilities(ten):
    """The option reaches the images: the crop is not Keras' resize."""
    resized, _ = predicted(ten)
    cropped, _ = predicted(ten, "--transform", "crop")
    assert max(abs(resized[p][1] - cropped[p][1]) for p in PHOTOS) > 1e-3
    assert np.isfinite([p for _, p in resized.values()]).all()
