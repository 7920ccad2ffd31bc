"""Fine-tuning runs against Keras' ``fit`` of the same file on the same pixels, for the
tests of the file's recipe, its regularizers, binary heads and class weights.

``finetune_and_compare`` runs xception-finetune with no recipe flag on a converted Keras file
and compares a few full-batch epochs with ``fit``: the compared layers' weights and the
per-epoch losses.  Tolerances come from Keras' own rounding, measured in the same run:
``fit`` of the float64 twin of the model from the same weights.  Each weight's deviation from
Keras (relative to how far Keras moved it) passes within ``FACTOR`` times that rounding (the
layer's, or the median over the layers where larger); a 2% error in a step is a thousand
times more."""
import csv
import json

import mxnet as mx
import numpy as np

import own_models
from conftest import run_tool
from reference_models import randomize_head
from shapes_dataset import write_shapes_dataset
from xception_mx.images.datasets import ImageDataset
from xception_mx.images.labels_csv import LabelsCsvSource
from xception_mx.images.sources import open_source
from xception_mx.validation.training_step import (float64_twin, keras_rows,
                                                  keras_variable_role, relative,
                                                  to_keras_layout)

SIZE, CLASSES, PER_CLASS, EPOCHS = (71, 71), 3, 4, 3
FACTOR = 10.0
HEAD = ("fc1", "out")


def frozen_base_model(keras, activation, units=CLASSES):
    """The keras.io transfer-learning guide's model: a frozen base, pooling, a head."""
    layers = keras.layers
    base = own_models._base(keras, 0, SIZE)
    base.trainable = False
    inputs = keras.Input(SIZE + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    x = layers.Dense(8, activation="relu", name="fc1")(x)
    return randomize_head(keras.Model(inputs, layers.Dense(units, activation=activation,
                                                           name="out")(x)), 0)


def keras_fit(model, recipe, keras, x, labels, dtype, layers, class_weight=None, log=None):
    """Keras ``fit`` of the recipe, full batch: ``(per-epoch losses, {layer: weights})``;
    with ``log``, its accuracy written there by Keras' ``CSVLogger``."""
    floatx = keras.backend.floatx()
    keras.backend.set_floatx(np.dtype(dtype).name)    # Keras 3 sums regularization in floatx
    try:
        model.compile(**recipe(keras), metrics=["accuracy"])
        name = model.loss if isinstance(model.loss, str) else type(model.loss).__name__
        if labels.ndim == 2:                 # multi-hot
            y = labels
        elif "inary" in name:
            y = labels.reshape(-1, 1)
        else:
            y = labels if "parse" in name else np.eye(CLASSES)[labels]
        history = model.fit(x.astype(dtype), y.astype(dtype), batch_size=len(x),
                            epochs=EPOCHS, shuffle=False, verbose=0,
                            class_weight=class_weight,
                            callbacks=[keras.callbacks.CSVLogger(str(log))] if log else [])
    finally:
        keras.backend.set_floatx(floatx)
    return history.history["loss"], weights_of(model, layers)


def weights_of(model, layers):
    """``{layer: {role: array}}`` of ``model``'s layers named ``layers`` (nested too)."""
    found = {}
    for layer in _leaves(model):
        if layer.name in layers:
            found[layer.name] = {keras_variable_role(v): np.asarray(v.numpy())
                                 for v in layer.weights if "moving" not in v.name}
    return found


def _leaves(model):
    for layer in model.layers:
        yield from (_leaves(layer) if hasattr(layer, "layers") else [layer])


def load_saved(keras, path):
    """The model as the file holds it (its regularizers acting), loaded by its Keras."""
    if str(path).endswith(".keras"):
        return keras.models.load_model(path, compile=False, safe_mode=True)
    return keras.models.load_model(path, compile=False)


def finetune_and_compare(keras, path, recipe, data, tmp_path, layers, flags=(),
                         class_weight=None):
    """xception-finetune with no recipe flag from the converted ``path``, against Keras'
    ``fit`` of the file's model: the ``layers``' weights after ``EPOCHS`` full-batch steps
    and the per-epoch losses.  Returns the run's stdout."""
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    x, labels = pixels(data)
    train = ["--labels-csv", data] if str(data).endswith(".csv") else [data]
    result = run_tool("xception-finetune", *train, "--out", tmp_path / "run", "--pretrained",
                      tmp_path / "mx", "--epochs", EPOCHS, "--batch-size", len(x),
                      "--pipeline-augmentation", "off", "--workers", "0", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_saved(keras, path)
    start, begun = model.get_weights(), weights_of(model, layers)
    losses, weights = keras_fit(model, recipe, keras, x, labels, np.float32, layers,
                                class_weight, log=tmp_path / "keras.csv")
    twin = float64_twin(model)
    twin.set_weights([np.asarray(w, np.float64) for w in start])
    losses64, weights64 = keras_fit(twin, recipe, keras, x, labels, np.float64, layers,
                                    class_weight)

    rows = keras_rows(json.loads((tmp_path / "mx-meta.json").read_text())["name_table"])
    params = {k: v.asnumpy() for k, v in
              mx.nd.load(str(tmp_path / "run" / ("epoch-%04d.params" % EPOCHS))).items()}
    found = []
    for layer in layers:
        for role, first in begun[layer].items():
            param, transform = rows[(layer, role)]
            moved = weights64[layer][role] - first
            assert np.linalg.norm(moved) > 1e-4 * np.linalg.norm(first)     # it does train
            found.append(("%s.%s" % (layer, role),
                          relative(to_keras_layout(params[param], transform),
                                   weights[layer][role], moved),
                          relative(weights[layer][role], weights64[layer][role], moved)))
    floor = float(np.median([r for _, _, r in found]))
    for what, deviation, rounding in found:
        assert deviation <= FACTOR * max(rounding, floor), (what, deviation, rounding, found)
    # the first loss is one computation; later ones carry the weights' deviation, which a step
    # can amplify: bounded by the largest weight tolerance (Keras' rounding x FACTOR, as the
    # weights are above) as a share of how far Keras' loss moved, times FACTOR again.  On an
    # AMD EPYC, sgd's overshooting second epoch left the loss 9e-6 of its move off, with the
    # weights up to 4e-6 off and Keras' own float32 rounding at 7e-7 (a 2% error: 2e-2)
    share = FACTOR * max(max(rounding, floor) for _, _, rounding in found)
    ours_losses = same_csv_columns(tmp_path / "run" / "metrics.csv", tmp_path / "keras.csv")
    for ours, theirs, exact in zip(ours_losses, losses, losses64):
        rounding = max(abs(theirs - exact), np.finfo(np.float32).eps * abs(exact),
                       share * abs(theirs - losses[0]))
        assert abs(ours - theirs) <= FACTOR * rounding, (ours_losses, losses, losses64, found)
    return result.stdout


def same_csv_columns(ours, keras):
    """The run's ``metrics.csv`` has the columns Keras' CSVLogger wrote (epoch first, from 0,
    the logs' keys in sorted order; here without validation) and the same epochs; returns
    its per-epoch losses."""
    with open(ours) as f:
        rows = list(csv.DictReader(f))
    with open(keras) as f:
        theirs = list(csv.DictReader(f))
    header = [c for c in rows[0] if c in theirs[0]]
    assert header == list(theirs[0]), (list(rows[0]), list(theirs[0]))
    assert [int(r["epoch"]) for r in rows] == [int(r["epoch"]) + 1 for r in theirs]   # from 1
    return [float(r["loss"]) for r in rows]


def write_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe") / "data"
    write_shapes_dataset(str(folder), per_class=PER_CLASS, seed=2, size=(80, 80))
    return folder


def pixels(folder):
    """The images as xception-finetune trains on them without augmentation (NHWC), and
    their labels."""
    source = LabelsCsvSource(str(folder)) if str(folder).endswith(".csv") else \
        open_source(str(folder))
    images = ImageDataset(source, range(len(source)), SIZE, True, augment=False)
    samples = [images[i] for i in range(len(images))]
    return (np.stack([x for x, _ in samples]).transpose(0, 2, 3, 1),
            np.array([y if np.ndim(y) else int(y) for _, y in samples]))


def momentum_sgd(k):
    return dict(optimizer=k.optimizers.SGD(0.02, momentum=0.9),
                loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
