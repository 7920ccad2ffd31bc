"""``xception-evaluate`` (issue #29): a checkpoint scored on a labelled folder or RecordIO as
Keras scores it (``--transform keras`` is what ``image_dataset_from_directory`` feeds
``model.evaluate``), classes matched by name whatever the folder's order, every file of
``--out`` and key of ``--report``, and bad input refused in one line."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS, assert_bad_input, run_tool
from xception_mx.checkpoint.files import write_checkpoint
from xception_mx.checkpoint.reading import load_params, load_symbol, read_meta
from shapes_dataset import write_shapes_dataset
from xception_mx.keras_side import import_keras
from reference_models import randomize_batchnorm

SIZE = (71, 71)
REPORT_KEYS = {"top1", "top5", "loss", "images", "classes", "per_class", "confusion_matrix",
               "ece", "misclassified"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A seeded transfer model Keras trained on generated textures (base frozen), its
    checkpoint with the class names in Keras' order, and a validation folder.  Keras 2
    (tf-keras): Keras 3.15's metrics, and its fit on a tf.data dataset, fail under TF 2.17
    ("dtype='string' is not a valid dtype"), and the bar is the accuracy evaluate prints."""
    import_keras()                      # MXNet first, TensorFlow quiet
    import tf_keras as keras
    root = tmp_path_factory.mktemp("evaluate")
    classes = write_shapes_dataset(str(root / "train"), per_class=10, size=(90, 80), seed=0)
    write_shapes_dataset(str(root / "val"), per_class=8, size=(84, 100), seed=1)
    keras.utils.set_random_seed(0)
    base = keras.applications.Xception(weights=None, include_top=False, input_shape=SIZE + (3,))
    randomize_batchnorm(base, 0)
    base.trainable = False
    inputs = keras.Input(SIZE + (3,))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    x = keras.layers.BatchNormalization(name="features_bn")(x)
    outputs = keras.layers.Dense(len(classes), activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(_directory_dataset(root / "train", 10), epochs=2, verbose=0)
    path = str(root / "model.h5")
    model.save(path)
    assert run_tool("keras2mxnet", path, "-o", root / "mx").returncode == 0
    (root / "mx-labels.txt").write_text("\n".join(classes) + "\n")
    return model, root, classes


def _directory_dataset(folder, batch_size):
    """Keras' ``image_dataset_from_directory`` (decoded and resized by TF, bilinear, no
    crop), in sorted order."""
    import tf_keras
    return tf_keras.utils.image_dataset_from_directory(str(folder), image_size=SIZE,
                                                       batch_size=batch_size, shuffle=False)


def _evaluate(prefix, data, folder, *options):
    """Evaluate with its outputs in folders that do not exist yet (made by the writers)."""
    path = folder / "reports" / "report.json"
    result = run_tool("xception-evaluate", prefix, data, "--report", path,
                      "--out", folder / "out" / "files", "--workers", 0, *options)
    report = json.loads(path.read_text()) if path.exists() else None
    return result, report


@pytest.mark.slow
def test_evaluate_reports_the_accuracy_keras_evaluate_prints(trained, tmp_path):
    model, root, classes = trained
    result, report = _evaluate(root / "mx", root / "val", tmp_path, "--transform", "keras",
                               "--keras", root / "model.h5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["agreement"] == 1.0 and report["keras_disagreements"] == []
    assert report["keras_top1"] == report["top1"] and report["max_abs_deviation"] < 1e-4
    val = _directory_dataset(root / "val", 8)
    loss, accuracy = model.evaluate(val, verbose=0)          # what Keras prints
    probabilities = model.predict(val, verbose=0)
    labels = np.concatenate([y.numpy() for _, y in val])
    assert abs(report["top1"] - accuracy) < 1e-6
    assert len(set(probabilities.argmax(axis=1))) > 1       # a model that tells classes apart
    assert abs(report["loss"] - loss) < 1e-4
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    predicted = probabilities.argmax(axis=1)
    assert report["confusion_matrix"] == confusion_matrix(labels, predicted).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted)
    assert [report["per_class"][c]["recall"] for c in classes] == pytest.approx(recall)
    assert [report["per_class"][c]["support"] for c in classes] == list(support)
    assert REPORT_KEYS <= set(report) and report["classes"] == classes
    assert report["images"] == 24 and report["top5"] == 1.0          # 3 classes: top-3
    confidence, correct = probabilities.max(axis=1), predicted == labels
    ece = sum(abs(correct[m].mean() - confidence[m].mean()) * m.mean()
              for m in (((confidence > lo) & (confidence <= lo + 1 / 15))
                        for lo in np.arange(15) / 15) if m.any())
    assert abs(report["ece"] - ece) < 1e-4
    wrong = [m for m in report["misclassified"]]
    assert len(wrong) == int((~correct).sum())
    for m in wrong:
        assert m["probability"] > m["true_probability"] and m["true"] != m["predicted"]
        assert os.path.isfile(m["path"])
    with open(tmp_path / "out" / "files" / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == classes and [list(map(int, r[1:])) for r in rows[1:]] == \
        report["confusion_matrix"]
    with open(tmp_path / "out" / "files" / "misclassified.csv") as f:
        assert len(list(csv.reader(f))) == len(wrong) + 1
    for png in ("confusion_matrix.png", "reliability.png"):
        with Image.open(tmp_path / "out" / "files" / png) as image:
            assert image.format == "PNG" and min(image.size) >= 400
    assert "top-1 %.4f" % accuracy in result.stdout


@pytest.mark.slow
def test_a_folder_whose_classes_sort_in_another_order_scores_the_same(trained, tmp_path):
    _, root, classes = trained
    renamed = ["zebra_" + classes[0], "apple_" + classes[1], "mango_" + classes[2]]
    for name, new in zip(classes, renamed):
        shutil.copytree(root / "val" / name, tmp_path / "val" / new)
    for suffix in ("-symbol.json", "-0000.params", "-meta.json"):
        shutil.copy(str(root / "mx") + suffix, str(tmp_path / "mx") + suffix)
    (tmp_path / "mx-labels.txt").write_text("\n".join(renamed) + "\n")     # the model's order
    first, ordered = _evaluate(root / "mx", root / "val", tmp_path / "a")
    second, shuffled = _evaluate(tmp_path / "mx", tmp_path / "val", tmp_path / "b")
    assert first.returncode == second.returncode == 0, second.stderr
    assert shuffled["classes"] == renamed
    assert shuffled["top1"] == ordered["top1"]
    # the same images in another order: the float64 mean summed in another order
    assert shuffled["loss"] == pytest.approx(ordered["loss"], rel=1e-12, abs=0)
    assert shuffled["confusion_matrix"] == ordered["confusion_matrix"]
    assert [shuffled["per_class"][n] for n in renamed] == \
        [ordered["per_class"][n] for n in classes]
    # the same images packed as RecordIO (xception-pack keeps the encoded bytes)
    assert run_tool("xception-pack", root / "val", tmp_path / "val").returncode == 0
    packed, from_rec = _evaluate(root / "mx", tmp_path / "val.rec", tmp_path / "c")
    assert packed.returncode == 0, packed.stderr
    assert from_rec["confusion_matrix"] == ordered["confusion_matrix"]
    assert from_rec["loss"] == pytest.approx(ordered["loss"], abs=1e-6)


@pytest.mark.slow
def test_a_model_without_class_names_is_matched_by_sorted_order_and_named_after_the_folders(
        trained, tmp_path):
    _, root, classes = trained
    for suffix in ("-symbol.json", "-0000.params", "-meta.json"):
        shutil.copy(str(root / "mx") + suffix, str(tmp_path / "mx") + suffix)
    result, report = _evaluate(tmp_path / "mx", root / "val", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: the model names no classes" in result.stderr
    assert report["classes"] == classes
    assert any(line.split()[:1] == [classes[0]] for line in result.stdout.splitlines())


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """A 1000-class Xception (seeded, 71x71) converted, and a folder of two synset folders."""
    keras = import_keras()
    root = tmp_path_factory.mktemp("imagenet")
    keras.utils.set_random_seed(1)
    model = keras.applications.Xception(weights=None, input_shape=SIZE + (3,))
    path = str(root / "in1k.keras")
    model.save(path)
    assert run_tool("keras2mxnet", path, "-o", root / "mx").returncode == 0
    for synset, photos in (("n01440764", PHOTOS[:2]), ("n02123045", PHOTOS[2:5])):
        os.makedirs(root / "data" / synset)
        for photo in photos:
            shutil.copy(photo, root / "data" / synset)
    return root


@pytest.mark.slow
def test_imagenet_synset_folders_are_its_classes(imagenet, tmp_path):
    """The 1000-class checkpoint on 2 folders: its table, averages and matrix cover the
    classes present (true or predicted), not 1000 rows; --all-classes gives all of them."""
    result, report = _evaluate(imagenet / "mx", imagenet / "data", tmp_path)
    assert result.returncode == 0, result.stderr
    assert report["model_classes"] == 1000 and report["images"] == 5
    assert report["classes"][0] == "tench (n01440764)"
    assert report["per_class"]["tench (n01440764)"]["support"] == 2
    assert report["per_class"]["tabby (n02123045)"]["support"] == 3
    assert sum(map(sum, report["confusion_matrix"])) == 5
    present = len(report["classes"])
    assert 2 <= present <= 7 and len(report["confusion_matrix"]) == present
    assert "of the model's 1000; --all-classes for all" in result.stdout
    assert len(result.stdout.splitlines()) < 20
    every, whole = _evaluate(imagenet / "mx", imagenet / "data", tmp_path / "all",
                             "--all-classes")
    assert every.returncode == 0, every.stderr
    assert len(whole["classes"]) == 1000 and len(whole["confusion_matrix"]) == 1000
    assert whole["macro_avg"]["f1"] == pytest.approx(report["macro_avg"]["f1"] * present / 1000)


def _class_folder(root, counts):
    for name, count in counts.items():
        os.makedirs(root / name)
        for i in range(count):
            shutil.copy(PHOTOS[i], root / name / ("%d.jpg" % i))
    return root


@pytest.mark.slow
def test_bad_inputs_are_one_line_and_write_nothing(trained, imagenet, tmp_path):
    _, root, classes = trained
    cases = []
    empty = _class_folder(tmp_path / "empty", {classes[0]: 1, classes[1]: 0})
    cases.append(((root / "mx", empty), (classes[1], "no images")))
    broken = _class_folder(tmp_path / "broken", {classes[0]: 1, classes[1]: 1})
    (broken / classes[1] / "bad.jpg").write_bytes(b"not a jpeg")
    cases.append(((root / "mx", broken), ("bad.jpg", "cannot read image")))
    flat = tmp_path / "flat"
    os.makedirs(flat)
    shutil.copy(PHOTOS[0], flat)
    cases.append(((root / "mx", flat), ("no class subfolders",)))
    unknown = _class_folder(tmp_path / "unknown", {classes[0]: 1, "giraffe": 1})
    cases.append(((root / "mx", unknown), ("'giraffe'", "not one of the model's 3 classes")))
    cases.append(((imagenet / "mx", unknown), ("'%s', 'giraffe' are not among the model's "
                                                "1000 classes" % classes[0], "and 988 more")))
    rec = tmp_path / "data.rec"
    assert run_tool("xception-pack", root / "val", tmp_path / "data").returncode == 0
    os.remove(tmp_path / "data.labels.txt")
    cases.append(((root / "mx", rec), ("data.rec", "no labels file")))
    cases.append(((root / "mx", tmp_path / "data"), ("data.rec is the packed data",
                                                     "give its name with .rec")))
    cases.append(((root / "model.h5", root / "val"), ("model.h5 is a Keras file",
                                                      "keras2mxnet %s -o PREFIX" % (
                                                          root / "model.h5"))))
    keras = import_keras()
    features = keras.applications.Xception(weights=None, include_top=False, pooling="avg",
                                           input_shape=SIZE + (3,))
    features.save(str(tmp_path / "features.keras"))
    assert run_tool("keras2mxnet", tmp_path / "features.keras", "-o",
                    tmp_path / "features").returncode == 0
    cases.append(((tmp_path / "features", root / "val"), ("features", "single-label")))
    for (prefix, data), fragments in cases:
        result = run_tool("xception-evaluate", prefix, data, "--report", tmp_path / "r.json",
                          "--out", tmp_path / "out", "--workers", 0)
        assert_bad_input(result, *fragments)
        assert not (tmp_path / "r.json").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_int8_cost_and_a_keras_disagreement_are_reported(trained, tmp_path):
    _, root, classes = trained
    result, report = _evaluate(root / "mx", root / "val", tmp_path, "--compare", "int8")
    assert result.returncode == 0, result.stderr
    other = report["compare"]
    assert other["precision"] == "int8" and 0.0 <= other["top1"] <= 1.0
    assert len(other["disagreements"]) == round((1 - other["agreement"]) * report["images"])
    assert "int8: top-1" in result.stdout
    quantized = run_tool("xception-quantize", root / "mx", "-o", tmp_path / "q8", "--precision",
                         "int8", "--calib-images", root / "val" / classes[0])
    assert quantized.returncode == 0, quantized.stderr
    shutil.copy(str(root / "mx-labels.txt"), str(tmp_path / "q8-labels.txt"))
    again, copy = _evaluate(tmp_path / "q8", root / "val", tmp_path / "q")
    assert again.returncode == 0 and copy["precision"] == "int8", again.stderr
    refused = run_tool("xception-evaluate", tmp_path / "q8", root / "val", "--compare", "fp32")
    assert_bad_input(refused, "--compare fp32", "optimized int8 copy", "--precision int8")
    # a checkpoint that is not the Keras model any more: exit status 1, the images named
    arg_params, aux_params = load_params(str(root / "mx"), 0)
    arg_params = {k: v.asnumpy() for k, v in arg_params.items()}
    arg_params["out_bias"] = arg_params["out_bias"] + np.array([0.0, 0.0, 50.0], np.float32)
    write_checkpoint(str(tmp_path / "bad"), load_symbol(str(root / "mx")), arg_params,
                     {k: v.asnumpy() for k, v in aux_params.items()}, read_meta(str(root / "mx")))
    shutil.copy(str(root / "mx-labels.txt"), str(tmp_path / "bad-labels.txt"))
    result, report = _evaluate(tmp_path / "bad", root / "val", tmp_path / "k", "--keras",
                               root / "model.h5", "--transform", "keras")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: %d of 24 images have another top-1 in Keras" % len(
        report["keras_disagreements"]) in result.stdout
    assert report["agreement"] < 1.0 and report["max_abs_deviation"] > 0.1
    assert all(d["predicted"] == classes[2] for d in report["keras_disagreements"])


@pytest.mark.slow
def test_keras_top5_is_keras_own_top5_on_a_model_of_more_than_five_classes(tmp_path):
    """Seven classes: ``keras_top5`` is the share of images whose class is among the five
    Keras ranks highest, computed here from Keras' own predictions on the same pixels."""
    from xception_mx.images.datasets import EvaluationImages
    from xception_mx.images.sources import open_source
    from xception_mx.keras_side import keras_xception
    keras = import_keras()
    keras.utils.set_random_seed(2)
    model = randomize_batchnorm(keras_xception(classes=7, classifier_activation="softmax",
                                               input_shape=SIZE), 2)
    path = str(tmp_path / "seven.keras")
    model.save(path)
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx", "--input-shape",
                    *map(str, SIZE)).returncode == 0
    names = ["class_%d" % i for i in range(7)]
    (tmp_path / "mx-labels.txt").write_text("\n".join(names) + "\n")
    for i, name in enumerate(names):
        os.makedirs(tmp_path / "data" / name)
        for photo in (PHOTOS * 2)[i:i + 2]:
            shutil.copy(photo, tmp_path / "data" / name)
    result, report = _evaluate(tmp_path / "mx", tmp_path / "data", tmp_path, "--keras", path)
    assert result.returncode == 0, result.stderr[-2000:]
    images = EvaluationImages(open_source(str(tmp_path / "data")), SIZE, list(range(7)))
    x = np.stack([images[i][0] for i in range(len(images))]).transpose(0, 2, 3, 1)
    labels = np.array([int(images[i][1]) for i in range(len(images))])
    ranked = np.argsort(-model.predict(x, verbose=0), axis=1)
    top1, top5 = (float((ranked[:, :k] == labels[:, None]).any(axis=1).mean()) for k in (1, 5))
    assert top1 != top5                                  # a case that tells them apart
    assert (report["keras_top1"], report["keras_top5"]) == pytest.approx((top1, top5))
