"""Binary heads (``Dense(1)`` logits, ``Dense(1, sigmoid)``) keep their one unit and train
with binary cross-entropy as Keras' ``fit``; ``--class-weight`` weights the loss as
``fit(class_weight=...)``."""
import json

import pytest

import own_models
from recipe_runs import (HEAD, finetune_and_compare, frozen_base_model, momentum_sgd,
                         write_data)



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory)


@pytest.fixture(scope="module")
def two_classes(data, tmp_path_factory):
    """Two of the three class folders."""
    import shutil
    folder = tmp_path_factory.mktemp("binary") / "data"
    for name in sorted(p.name for p in data.iterdir())[:2]:
        shutil.copytree(data / name, folder / name)
    return folder


def guide_recipe(k):
    return dict(optimizer=k.optimizers.Adam(1e-3),
                loss=k.losses.BinaryCrossentropy(from_logits=True))


def smoothed_sigmoid_recipe(k):
    return dict(optimizer=k.optimizers.SGD(0.05, momentum=0.9),
                loss=k.losses.BinaryCrossentropy(label_smoothing=0.1))


@pytest.mark.parametrize("recipe, keras_version, activation", [
    (guide_recipe, "keras3", None), (smoothed_sigmoid_recipe, "tf-keras", "sigmoid")],
    ids=["logit-keras3", "sigmoid-tf-keras"])
def test_a_binary_head_keeps_its_one_unit_and_trains_as_keras_fit(
        recipe, keras_version, activation, two_classes, tmp_path):
    """``Dense(1)`` logits and ``Dense(1, sigmoid)`` on two class folders: binary
    cross-entropy on the logit (class 1: the second folder), Keras ``fit``'s weights and
    losses; the export keeps the one-unit head and its activation."""
    keras = own_models.import_keras() if keras_version == "keras3" else \
        own_models.import_tf_keras()
    model = frozen_base_model(keras, activation, units=1)
    model.compile(**recipe(keras))
    path = own_models.save(model, str(tmp_path / ("m.keras" if keras_version == "keras3"
                                                  else "m.h5")))
    stdout = finetune_and_compare(keras, path, recipe, two_classes, tmp_path, HEAD)
    assert "2 classes" in stdout and "head kept" in stdout and "BinaryCrossentropy(" in stdout
    export = json.loads((tmp_path / "run" / "model-meta.json").read_text())
    out = [layer for layer in export["model"]["transfer"]["head"] if layer["name"] == "out"][0]
    assert (out["units"], out["activation"]) == (1, activation or "linear")


@pytest.mark.parametrize("keras_version", ["keras3", "tf-keras"])
def test_class_weights_weight_the_loss_as_keras_fit_class_weight(keras_version, data,
                                                                 tmp_path):
    """Unbalanced folders (4, 2 and 1 images): ``--class-weight balanced`` is ``fit``'s
    ``class_weight={i: n / (classes * count_i)}``; a JSON file of weights by name too."""
    import shutil
    keras = own_models.import_keras() if keras_version == "keras3" else \
        own_models.import_tf_keras()
    folder = tmp_path / "unbalanced"
    names = sorted(p.name for p in data.iterdir())
    for name, count in zip(names, (4, 2, 1)):
        (folder / name).mkdir(parents=True)
        for image in sorted((data / name).iterdir())[:count]:
            shutil.copy(image, folder / name)
    model = frozen_base_model(keras, None)
    model.compile(**momentum_sgd(keras))
    path = own_models.save(model, str(tmp_path / ("m.keras" if keras_version == "keras3"
                                                  else "m.h5")))
    balanced = {0: 7 / (3 * 4), 1: 7 / (3 * 2), 2: 7 / (3 * 1)}
    stdout = finetune_and_compare(keras, path, momentum_sgd, folder, tmp_path, HEAD,
                                  ["--class-weight", "balanced"], balanced)
    assert "class weights %s 0.5833, %s 1.167, %s 2.333" % tuple(names) in stdout
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({names[0]: 0.5, names[1]: 3.0, names[2]: 1.0}))
    (tmp_path / "file").mkdir()
    finetune_and_compare(keras, path, momentum_sgd, folder, tmp_path / "file", HEAD,
                         ["--class-weight", str(weights)], {0: 0.5, 1: 3.0, 2: 1.0})
