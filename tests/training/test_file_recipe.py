"""xception-finetune trains with the recipe the Keras file was compiled with: with no
optimizer, learning-rate or loss flag, a few full-batch epochs give Keras ``fit``'s losses
and weights on the same pixels, for each supported optimizer, schedule and loss, in Keras 2
and Keras 3.  The model has a frozen base (``base.trainable = False``, which Keras runs in
inference mode) and a two-Dense head.

Tolerances come from Keras' own rounding, measured in the same run: ``fit`` of the float64
twin of the model from the same weights.  Each head weight's deviation from Keras (relative
to how far Keras moved it) passes within ``FACTOR`` times that rounding (the layer's, or the
median over the layers where larger); a 2% error in a step is a thousand times more."""
import json

import mxnet as mx
import numpy as np
import pytest

import own_models
from conftest import assert_bad_input, run_tool
from reference_models import randomize_head
from shapes_dataset import write_shapes_dataset
from xception_mx.images.datasets import ImageDataset
from xception_mx.images.sources import open_source
from xception_mx.validation.training_step import float64_twin, relative

SIZE, CLASSES, PER_CLASS, EPOCHS = (71, 71), 3, 4, 3
FACTOR = 10.0
HEAD = ("fc1", "out")


def adam(k):
    return dict(optimizer=k.optimizers.Adam(5e-4),
                loss=k.losses.CategoricalCrossentropy(from_logits=True))


def sgd(k):
    schedule = k.optimizers.schedules.ExponentialDecay(0.05, 1, 0.7)
    return dict(optimizer=k.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
                loss="sparse_categorical_crossentropy")


def rmsprop(k):
    schedule = k.optimizers.schedules.CosineDecay(0.0, 4, warmup_target=1e-3, warmup_steps=2)
    return dict(optimizer=k.optimizers.RMSprop(schedule, momentum=0.5, clipnorm=0.5),
                loss=k.losses.CategoricalCrossentropy(label_smoothing=0.1))


def nadam(k):
    schedule = k.optimizers.schedules.PiecewiseConstantDecay([0, 1], [2e-3, 1e-3, 5e-4])
    return dict(optimizer=k.optimizers.Nadam(schedule, global_clipnorm=1.0),
                loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))


def adamw(k):
    schedule = k.optimizers.schedules.PolynomialDecay(1e-3, 3, 1e-4)
    return dict(optimizer=k.optimizers.AdamW(schedule, weight_decay=0.05, clipvalue=0.01),
                loss=k.losses.SparseCategoricalCrossentropy())


def inverse_time_sgd(k):
    schedule = k.optimizers.schedules.InverseTimeDecay(0.02, 1, 0.5)
    return dict(optimizer=k.optimizers.SGD(schedule), loss="categorical_crossentropy")


def centered_rmsprop(k):
    return dict(optimizer=k.optimizers.RMSprop(2e-3, rho=0.8, centered=True),
                loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))


def clipped_adam(k):
    schedule = k.optimizers.schedules.CosineDecay(2e-3, 3, alpha=0.2)
    return dict(optimizer=k.optimizers.Adam(schedule, global_clipnorm=0.5, beta_1=0.8),
                loss=k.losses.CategoricalCrossentropy(label_smoothing=0.2))


# (recipe, Keras, the head's output activation)
CASES = [(adam, "keras3", None), (rmsprop, "keras3", "softmax"), (nadam, "keras3", None),
         (adamw, "keras3", "softmax"), (inverse_time_sgd, "keras3", "softmax"),
         (sgd, "tf-keras", "softmax"), (clipped_adam, "tf-keras", "softmax"),
         (centered_rmsprop, "tf-keras", None), (adamw, "tf-keras", "softmax")]


def frozen_base_model(keras, activation):
    layers = keras.layers
    base = own_models._base(keras, 0, SIZE)
    base.trainable = False
    inputs = keras.Input(SIZE + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    x = layers.Dense(8, activation="relu", name="fc1")(x)
    return randomize_head(keras.Model(inputs, layers.Dense(CLASSES, activation=activation,
                                                           name="out")(x)), 0)


def keras_fit(model, recipe, keras, x, labels, dtype):
    model.compile(**recipe(keras))
    sparse = "Sparse" in type(model.loss).__name__ or model.loss == \
        "sparse_categorical_crossentropy"
    y = labels if sparse else np.eye(CLASSES)[labels]
    history = model.fit(x.astype(dtype), y.astype(dtype), batch_size=len(x), epochs=EPOCHS,
                        shuffle=False, verbose=0)
    return history.history["loss"], {name: model.get_layer(name).get_weights()
                                     for name in HEAD}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe") / "data"
    write_shapes_dataset(str(folder), per_class=PER_CLASS, seed=2, size=(80, 80))
    return folder


def pixels(folder):
    """The images as xception-finetune trains on them without augmentation (NHWC), and
    their labels."""
    images = ImageDataset(open_source(str(folder)), range(CLASSES * PER_CLASS), SIZE, True,
                          augment=False)
    samples = [images[i] for i in range(len(images))]
    return (np.stack([x for x, _ in samples]).transpose(0, 2, 3, 1),
            np.array([int(y) for _, y in samples]))


@pytest.mark.parametrize("recipe, keras_version, activation", CASES,
                         ids=["%s-%s" % (c[0].__name__, c[1]) for c in CASES])
def test_finetuning_with_no_flags_is_keras_fit_of_the_file_recipe(recipe, keras_version,
                                                                  activation, data, tmp_path):
    keras = own_models.import_keras() if keras_version == "keras3" else \
        own_models.import_tf_keras()
    model = frozen_base_model(keras, activation)
    model.compile(**recipe(keras))
    path = own_models.save(model, str(tmp_path / ("m.keras" if keras_version == "keras3"
                                                  else "m.h5")))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    result = run_tool("xception-finetune", data, "--out", tmp_path / "run", "--pretrained",
                      tmp_path / "mx", "--epochs", EPOCHS, "--batch-size", CLASSES * PER_CLASS,
                      "--pipeline-augmentation", "off", "--workers", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training with the Keras file's recipe, %s(" % type(model.optimizer).__name__ \
        in result.stdout

    x, labels = pixels(data)
    start = model.get_weights()
    begun = {name: model.get_layer(name).get_weights() for name in HEAD}
    losses, weights = keras_fit(model, recipe, keras, x, labels, np.float32)
    twin = float64_twin(model)
    twin.set_weights([np.asarray(w, np.float64) for w in start])
    losses64, weights64 = keras_fit(twin, recipe, keras, x, labels, np.float64)

    params = {k: v.asnumpy() for k, v in
              mx.nd.load(str(tmp_path / "run" / ("epoch-%04d.params" % (EPOCHS - 1)))).items()}
    found = []
    for name in HEAD:
        for role, ours, theirs, exact, first in zip(
                ("kernel", "bias"), (params[name + "_weight"].T, params[name + "_bias"]),
                weights[name], weights64[name], begun[name]):
            moved = exact - first
            assert np.linalg.norm(moved) > 1e-4 * np.linalg.norm(first)     # it does train
            found.append(("%s.%s" % (name, role), relative(ours, theirs, moved),
                          relative(theirs, exact, moved)))
    floor = float(np.median([r for _, _, r in found]))
    for what, deviation, rounding in found:
        assert deviation <= FACTOR * max(rounding, floor), (what, deviation, rounding, found)
    # the first loss is one computation; later ones carry the weights' deviation, bounded
    # like the weights: the largest weight tolerance's share of how far Keras' loss moved
    share = max(max(rounding, floor) for _, _, rounding in found)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    ours_losses = [float(r.split(",")[2]) for r in rows[1:]]
    for ours, theirs, exact in zip(ours_losses, losses, losses64):
        rounding = max(abs(theirs - exact), np.finfo(np.float32).eps * abs(exact),
                       share * abs(theirs - losses[0]))
        assert abs(ours - theirs) <= FACTOR * rounding, (ours_losses, losses, losses64, found)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A Keras 3 frozen-base model compiled with ``Adam(ExponentialDecay(0.05, 1, 0.7))`` and
    categorical cross-entropy, converted: ``(model, checkpoint prefix)``."""
    keras = own_models.import_keras()
    folder = tmp_path_factory.mktemp("compiled")
    model = frozen_base_model(keras, "softmax")
    model.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(0.05, 1, 0.7)),
        loss="categorical_crossentropy")
    path = own_models.save(model, str(folder / "m.keras"))
    assert run_tool("keras2mxnet", path, "-o", folder / "mx").returncode == 0
    return model, str(folder / "mx")


def lr_column(run):
    rows = (run / "metrics.csv").read_text().splitlines()
    return [float(r.split(",")[1]) for r in rows[1:]]


def test_a_flag_replaces_its_part_of_the_file_recipe_only(compiled, data, tmp_path):
    """--lr scales the file's schedule to that peak (Keras steps it: one step per epoch
    here); --recipe default trains as a file without a recipe would."""
    _, prefix = compiled
    common = ["--epochs", "2", "--batch-size", CLASSES * PER_CLASS, "--workers", "0",
              "--pretrained", prefix]
    result = run_tool("xception-finetune", data, "--out", tmp_path / "lr", "--lr", "0.01",
                      *common)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "but for --lr: keras-adam (lr ExponentialDecay(" in result.stdout
    assert lr_column(tmp_path / "lr") == pytest.approx([0.01, 0.01 * 0.7], rel=1e-6)
    result = run_tool("xception-finetune", data, "--out", tmp_path / "default", "--recipe",
                      "default", *common)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training with nag (lr 0.01, cosine)" in result.stdout
    assert "--recipe default: the file's Adam(learning_rate=ExponentialDecay(" in result.stdout
    saved = json.loads((tmp_path / "default" / "model-meta.json").read_text())
    assert saved["training"]["optimizer"] == "nag"
    assert saved["recipe"]["optimizer"]["class_name"] == "Adam"     # kept for a next run


def _with_recipe(prefix, recipe, out):
    """A copy of checkpoint ``prefix`` whose meta records ``recipe``."""
    import shutil
    for suffix in ("-symbol.json", "-0000.params"):
        shutil.copy(prefix + suffix, str(out) + suffix)
    meta = json.loads(open(prefix + "-meta.json").read())
    meta["recipe"] = recipe
    (out.parent / (out.name + "-meta.json")).write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize("keras_version, compile_arguments, fragment", [
    ("keras3", lambda k: dict(optimizer=k.optimizers.Adagrad()),
     "the optimizer Adagrad is not supported (supported: SGD, Adam, AdamW, RMSprop, Nadam); "
     "--optimizer replaces it"),
    ("keras3", lambda k: dict(optimizer=k.optimizers.Adam(use_ema=True)),
     "Adam(use_ema=True) is not supported; --optimizer replaces it"),
    ("keras3", lambda k: dict(optimizer=k.optimizers.SGD(
        k.optimizers.schedules.CosineDecayRestarts(0.1, 10))),
     "the learning-rate schedule CosineDecayRestarts is not supported"),
    ("keras3", lambda k: dict(optimizer="adam", loss=k.losses.Huber()),
     "the loss Huber is not supported (supported: CategoricalCrossentropy, "
     "SparseCategoricalCrossentropy); --loss replaces it"),
    ("keras3", lambda k: dict(optimizer="adam", loss=k.losses.CategoricalCrossentropy(
        from_logits=True)), "CategoricalCrossentropy(from_logits=True) on a model whose output "
     "is probabilities"),
    ("tf-keras", lambda k: dict(optimizer=k.optimizers.Nadam()),
     "Keras 2's Nadam (in a compiled fit, tf-keras multiplies"),
])
def test_a_recipe_part_not_supported_is_refused_in_one_line_naming_it(
        keras_version, compile_arguments, fragment, compiled, data, tmp_path):
    from xception_mx.conversion.compile_config import compiled_recipe
    from xception_mx.conversion.keras_reader import read_keras_file
    keras = own_models.import_keras() if keras_version == "keras3" else \
        own_models.import_tf_keras()
    model = frozen_base_model(keras, "softmax")
    model.compile(**dict({"loss": "categorical_crossentropy"}, **compile_arguments(keras)))
    path = own_models.save(model, str(tmp_path / ("m.keras" if keras_version == "keras3"
                                                  else "m.h5")))
    recipe = compiled_recipe(read_keras_file(path, weights=False))
    prefix = _with_recipe(compiled[1], recipe, tmp_path / "mx")
    if keras_version != "keras3":
        meta = json.loads((tmp_path / "mx-meta.json").read_text())
        meta["source"]["keras_version"] = "2.17.0"
        (tmp_path / "mx-meta.json").write_text(json.dumps(meta))
    result = run_tool("xception-finetune", data, "--out", tmp_path / "run", "--pretrained",
                      prefix, "--epochs", "1", "--workers", "0")
    assert_bad_input(result, "--pretrained %s (the Keras file's compile config): " % prefix,
                     fragment, "--recipe default")
    assert not (tmp_path / "run").exists()
