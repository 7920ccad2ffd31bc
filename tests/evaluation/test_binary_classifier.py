"""A binary classifier (the keras.io guide's ``Dense(1)`` logit, or a sigmoid unit) after
fine-tuning: xception-predict gives both classes' probabilities, xception-evaluate scores it
as two classes, class 1 where the probability reaches ``--threshold``, against Keras' own
predictions of the exported model."""
import json

import numpy as np
import pytest

import own_models
from conftest import assert_bad_input, run_tool
from reference_models import randomize_head
from shapes_dataset import write_shapes_dataset

SIZE = (71, 71)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(export prefix, data folder, back.keras)``: a Dense(1) model fine-tuned for an
    epoch on two class folders, and the export given back to Keras."""
    keras = own_models.import_keras()
    folder = tmp_path_factory.mktemp("binary_eval")
    layers = keras.layers
    base = own_models._base(keras, 0, SIZE)
    base.trainable = False
    inputs = keras.Input(SIZE + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    model = randomize_head(keras.Model(inputs, layers.Dense(1, name="out")(x)), 0)
    path = own_models.save(model, str(folder / "m.keras"))
    data = folder / "data"
    write_shapes_dataset(str(data), per_class=5, seed=3, size=(80, 80))
    for extra in sorted(p for p in data.iterdir())[2:]:
        import shutil
        shutil.rmtree(extra)
    assert run_tool("keras2mxnet", path, "-o", folder / "mx").returncode == 0
    result = run_tool("xception-finetune", data, "--out", folder / "run", "--pretrained",
                      folder / "mx", "--epochs", "1", "--batch-size", "10", "--workers", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    back = folder / "back.keras"
    assert run_tool("mxnet2keras", folder / "run" / "model", "-o", back).returncode == 0
    return str(folder / "run" / "model"), data, back


def keras_probabilities(back, data):
    """Keras' probability of class 1 for each image, in the evaluation's order (sorted
    folders and files, resized as Keras does, xception-evaluate.s default)."""
    from xception_mx.images.datasets import EvaluationImages
    from xception_mx.images.sources import open_source
    keras = own_models.import_keras()
    model = keras.models.load_model(str(back), compile=False, safe_mode=True)
    source = open_source(str(data))
    images = EvaluationImages(source, SIZE, [0, 1])
    x = np.stack([images[i][0] for i in range(len(images))]).transpose(0, 2, 3, 1)
    labels = np.array([int(images[i][1]) for i in range(len(images))])
    logit = model.predict(x, verbose=0)[:, 0].astype(np.float64)
    return 1 / (1 + np.exp(-logit)), labels


@pytest.mark.parametrize("threshold", [None, 0.3, 0.7])
def test_evaluate_scores_a_binary_classifier_as_two_classes_at_the_threshold(
        exported, threshold, tmp_path):
    prefix, data, back = exported
    flags = [] if threshold is None else ["--threshold", str(threshold)]
    result = run_tool("xception-evaluate", prefix, data, "--workers", "0", "--report",
                      tmp_path / "r.json", *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    p, labels = keras_probabilities(back, data)
    predicted = (p >= (threshold or 0.5)).astype(int)
    assert report["classes"] == sorted(q.name for q in data.iterdir())
    assert report["threshold"] == (threshold or 0.5)
    assert report["top1"] == pytest.approx(float((predicted == labels).mean()))
    assert np.array(report["confusion_matrix"]).tolist() == [
        [int(((labels == t) & (predicted == q)).sum()) for q in (0, 1)] for t in (0, 1)]


def test_predict_gives_both_classes_of_a_binary_classifier(exported):
    prefix, data, back = exported
    image = sorted((data / sorted(q.name for q in data.iterdir())[1]).iterdir())[0]
    result = run_tool("xception-predict", prefix, image, "--top", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(q.name for q in data.iterdir())
    keras = own_models.import_keras()
    from xception_mx.images.decode import load_images
    x = load_images([str(image)], SIZE).transpose(0, 2, 3, 1)
    model = keras.models.load_model(str(back), compile=False, safe_mode=True)
    p = float(1 / (1 + np.exp(-float(model.predict(x, verbose=0)[0, 0]))))
    shown = {line.split()[-1]: float(line.split()[1]) for line in result.stdout.splitlines()
             if line.strip()[:2] in ("1.", "2.")}
    assert shown == pytest.approx({names[0]: 1 - p, names[1]: p}, abs=2e-4)


def test_threshold_is_refused_for_a_model_that_is_not_binary(exported, work):
    _, data, _ = exported
    result = run_tool("xception-evaluate", work / "x71", data, "--threshold", "0.5")
    assert_bad_input(result, "--threshold", "is not a binary classifier")
