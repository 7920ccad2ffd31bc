"""A head ending in ``Dense(k, activation="sigmoid")`` trains multi-label from a CSV of
``path,label;label;...`` (``--labels-csv``, the image folder optional) as Keras' ``fit``
trains it with binary cross-entropy on multi-hot labels, and keeps its sigmoid head through
the export; ``xception-evaluate --labels-csv`` scores it per class (precision, recall, F1 at
``--threshold``) and by mean average precision, on the probabilities Keras' own model gives
the same images."""
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

import own_models
from conftest import assert_bad_input, run_tool
from recipe_runs import HEAD, PER_CLASS, finetune_and_compare, frozen_base_model, pixels
from shapes_dataset import write_shapes_dataset

LABELS = ("indoor", "striped", "warm")


def recipe(k):
    return dict(optimizer=k.optimizers.Adam(2e-3), loss=k.losses.BinaryCrossentropy())


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The shapes dataset's images, labelled by a CSV beside them: each image one, two or
    three labels.  ``(CSV, the multi-hot labels written, in its order)``."""
    folder = tmp_path_factory.mktemp("multilabel") / "images"
    classes = write_shapes_dataset(str(folder), per_class=PER_CLASS, seed=2, size=(80, 80))
    rows, i, hot = ["path,labels"], 0, []
    for name in classes:
        for n in range(PER_CLASS):
            chosen = {LABELS[i % 3]} | ({LABELS[(i + 1) % 3]} if i % 2 else set()) | (
                set(LABELS) if i % 5 == 4 else set())
            rows.append("%s/%03d.png,%s" % (name, n, ";".join(sorted(chosen))))
            hot.append([float(label in chosen) for label in LABELS])
            i += 1
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv", np.array(hot)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras = own_models.import_keras()
    model = frozen_base_model(keras, "sigmoid", units=len(LABELS))
    model.compile(**recipe(keras))
    folder = tmp_path_factory.mktemp("sigmoid")
    return keras, model, own_models.save(model, str(folder / "m.keras"))


def test_a_sigmoid_head_trains_multilabel_from_a_csv_as_keras_fit_does(labelled, model_file,
                                                                       tmp_path):
    keras, _, path = model_file
    csv_file, hot = labelled
    assert np.array_equal(pixels(csv_file)[1], hot)        # what both sides train toward
    stdout = finetune_and_compare(keras, path, recipe, csv_file, tmp_path, HEAD)
    assert "BinaryCrossentropy" in stdout
    meta = json.loads((tmp_path / "run" / "model-meta.json").read_text())
    last = meta["model"]["transfer"]["head"][-1]
    assert (last["name"], last["units"], last["activation"]) == ("out", 3, "sigmoid")
    assert (tmp_path / "run" / "model-labels.txt").read_text().split() == list(LABELS)


def test_evaluate_scores_each_label_and_the_mean_average_precision(labelled, model_file,
                                                                    tmp_path):
    keras, model, path = model_file
    labelled, hot = labelled
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    (tmp_path / "mx-labels.txt").write_text("\n".join(LABELS) + "\n")
    result = run_tool("xception-evaluate", tmp_path / "mx", "--labels-csv", labelled,
                      "--threshold", "0.5", "--report", tmp_path / "report.json",
                      "--transform", "crop")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["transform"] == "crop"
    x, truth = pixels(labelled)                     # validation's crop, in CSV order
    assert np.array_equal(truth, hot)
    probabilities = model.predict(x, verbose=0)
    rows = labelled.read_text().splitlines()[1:]
    assert report["paths"] == [str(labelled.parent / r.split(",")[0]) for r in rows]
    p, r, f1, support = precision_recall_fscore_support(truth, probabilities >= 0.5,
                                                        average=None, zero_division=0)
    for i, row in enumerate(report["per_class"]):
        assert row["class"] == LABELS[i] and row["support"] == support[i]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(
            (p[i], r[i], f1[i]), abs=1e-9)
        assert row["average_precision"] == pytest.approx(
            average_precision_score(truth[:, i], probabilities[:, i]), abs=1e-6)
    assert report["mean_average_precision"] == pytest.approx(np.mean(
        [average_precision_score(truth[:, i], probabilities[:, i]) for i in range(3)]),
        abs=1e-6)
    assert "mean average precision" in result.stdout


def test_what_multilabel_training_cannot_take_is_refused_in_one_line(labelled, model_file,
                                                                     tmp_path):
    keras, _, _ = model_file
    labelled = labelled[0]
    softmax = frozen_base_model(keras, "softmax", units=3)
    path = own_models.save(softmax, str(tmp_path / "softmax.keras"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    result = run_tool("xception-finetune", "--labels-csv", labelled, "--pretrained",
                      tmp_path / "mx", "--out", tmp_path / "run")
    assert_bad_input(result, "--labels-csv trains a multi-label classifier: --pretrained must "
                     "be a model whose head ends in Dense(k, activation='sigmoid')")
    assert not (tmp_path / "run").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("path,labels\nnot-there.png,a\n")
    result = run_tool("xception-evaluate", tmp_path / "mx", "--labels-csv", bad)
    assert_bad_input(result, "--labels-csv %s, row 2: %s is not an image file" % (
        bad, tmp_path / "not-there.png"))
    result = run_tool("xception-evaluate", tmp_path / "mx", "--labels-csv", labelled)
    assert_bad_input(result, "its output is probabilities of 3 units; --labels-csv scores "
                     "multi-label classifiers (Dense(k, sigmoid), k > 1)")
