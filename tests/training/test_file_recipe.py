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
from xception_mx.validation.training_step import (float64_twin, keras_rows,
                                                  keras_variable_role, relative,
                                                  to_keras_layout)

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


def keras_fit(model, recipe, keras, x, labels, dtype, layers, class_weight=None):
    """Keras ``fit`` of the recipe, full batch: ``(per-epoch losses, {layer: weights})``."""
    floatx = keras.backend.floatx()
    keras.backend.set_floatx(np.dtype(dtype).name)    # Keras 3 sums regularization in floatx
    try:
        model.compile(**recipe(keras))
        name = model.loss if isinstance(model.loss, str) else type(model.loss).__name__
        if "inary" in name:
            y = labels.reshape(-1, 1)
        else:
            y = labels if "parse" in name else np.eye(CLASSES)[labels]
        history = model.fit(x.astype(dtype), y.astype(dtype), batch_size=len(x),
                            epochs=EPOCHS, shuffle=False, verbose=0,
                            class_weight=class_weight)
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
    result = run_tool("xception-finetune", data, "--out", tmp_path / "run", "--pretrained",
                      tmp_path / "mx", "--epochs", EPOCHS, "--batch-size", len(x),
                      "--pipeline-augmentation", "off", "--workers", "0", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_saved(keras, path)
    start, begun = model.get_weights(), weights_of(model, layers)
    losses, weights = keras_fit(model, recipe, keras, x, labels, np.float32, layers,
                                class_weight)
    twin = float64_twin(model)
    twin.set_weights([np.asarray(w, np.float64) for w in start])
    losses64, weights64 = keras_fit(twin, recipe, keras, x, labels, np.float64, layers,
                                    class_weight)

    rows = keras_rows(json.loads((tmp_path / "mx-meta.json").read_text())["name_table"])
    params = {k: v.asnumpy() for k, v in
              mx.nd.load(str(tmp_path / "run" / ("epoch-%04d.params" % (EPOCHS - 1)))).items()}
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
    # the first loss is one computation; later ones carry the weights' deviation, bounded
    # like the weights: the largest weight tolerance's share of how far Keras' loss moved
    share = max(max(rounding, floor) for _, _, rounding in found)
    csv = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    ours_losses = [float(r.split(",")[2]) for r in csv[1:]]
    for ours, theirs, exact in zip(ours_losses, losses, losses64):
        rounding = max(abs(theirs - exact), np.finfo(np.float32).eps * abs(exact),
                       share * abs(theirs - losses[0]))
        assert abs(ours - theirs) <= FACTOR * rounding, (ours_losses, losses, losses64, found)
    return result.stdout


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe") / "data"
    write_shapes_dataset(str(folder), per_class=PER_CLASS, seed=2, size=(80, 80))
    return folder


def pixels(folder):
    """The images as xception-finetune trains on them without augmentation (NHWC), and
    their labels."""
    source = open_source(str(folder))
    images = ImageDataset(source, range(len(source)), SIZE, True, augment=False)
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
    stdout = finetune_and_compare(keras, path, recipe, data, tmp_path, HEAD)
    assert "training with the Keras file's recipe, %s(" % type(model.optimizer).__name__ \
        in stdout


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


def regularized_model(keras):
    """Block 14 trainable (its second separable convolution with depthwise L1 and pointwise
    L2 regularizers), the rest of the base frozen (one frozen layer regularized too); a head
    with L2 kernels, an L1L2 bias and an L1 activity regularizer."""
    layers, regularizers = keras.layers, keras.regularizers
    base = own_models._base(keras, 0, SIZE)
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block14")
    conv = base.get_layer("block14_sepconv2")
    conv.depthwise_regularizer = regularizers.L1(1e-4)
    conv.pointwise_regularizer = regularizers.L2(1e-3)
    # frozen: in the loss Keras 2 reports, not in Keras 3's
    base.get_layer("block13_sepconv1").pointwise_regularizer = regularizers.L2(1e-2)
    inputs = keras.Input(SIZE + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs))
    x = layers.Dense(8, activation="relu", name="fc1", kernel_regularizer=regularizers.L2(0.05),
                     activity_regularizer=regularizers.L1(0.01))(x)
    outputs = layers.Dense(CLASSES, name="out", kernel_regularizer=regularizers.L2(0.05),
                           bias_regularizer=regularizers.L1L2(0.01, 0.02))(x)
    return randomize_head(keras.Model(inputs, outputs), 0)


def momentum_sgd(k):
    return dict(optimizer=k.optimizers.SGD(0.02, momentum=0.9),
                loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.mark.parametrize("keras_version", ["keras3", "tf-keras"])
def test_the_file_regularizers_add_to_the_loss_as_in_keras_fit(keras_version, data, tmp_path):
    """Kernel, bias, depthwise, pointwise and activity regularizers, in the base and the head:
    the losses (Keras' loss: the compiled loss plus the regularization losses) and weights
    after full-batch steps are ``fit``'s; without them (``--regularizers none``) they are
    not."""
    keras = own_models.import_keras() if keras_version == "keras3" else \
        own_models.import_tf_keras()
    model = regularized_model(keras)
    model.compile(**momentum_sgd(keras))
    path = own_models.save(model, str(tmp_path / ("m.keras" if keras_version == "keras3"
                                                  else "m.h5")))
    stdout = finetune_and_compare(keras, path, momentum_sgd, data, tmp_path,
                                  HEAD + ("block14_sepconv2",))
    assert "the file's regularizers act: " in stdout
    assert "block14_sepconv2 depthwise_regularizer (l1 0.0001, l2 0)" in stdout
    meta = json.loads((tmp_path / "mx-meta.json").read_text())
    saved = meta["regularizers"]["out"]["bias_regularizer"]
    assert saved["class_name"] == "L1L2"
    assert (saved["config"]["l1"], saved["config"]["l2"]) == pytest.approx((0.01, 0.02))
    (tmp_path / "none").mkdir()
    with pytest.raises(AssertionError, match=r"\('(fc1|out|block14_sepconv2)\.\w+', "):
        finetune_and_compare(keras, path, momentum_sgd, data, tmp_path / "none",
                             HEAD + ("block14_sepconv2",), ["--regularizers", "none"])


def test_mxnet2keras_gives_the_regularizers_back(data, tmp_path):
    """A fine-tuning export of the regularized model, back in Keras, has them all."""
    keras = own_models.import_keras()
    model = regularized_model(keras)
    path = own_models.save(model, str(tmp_path / "m.keras"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    result = run_tool("xception-finetune", data, "--out", tmp_path / "run", "--pretrained",
                      tmp_path / "mx", "--epochs", "1", "--batch-size", CLASSES * PER_CLASS,
                      "--workers", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "back.keras"
    assert run_tool("mxnet2keras", tmp_path / "run" / "model", "-o", out).returncode == 0
    back = load_saved(keras, str(out))
    base = back.get_layer("xception")
    assert base.get_layer("block14_sepconv2").pointwise_regularizer.get_config()["l2"] == \
        pytest.approx(1e-3)
    assert base.get_layer("block14_sepconv2").depthwise_regularizer.get_config()["l1"] == \
        pytest.approx(1e-4)
    assert back.get_layer("fc1").activity_regularizer.get_config()["l1"] == pytest.approx(0.01)
    assert back.get_layer("out").bias_regularizer.get_config() == pytest.approx(
        {"l1": 0.01, "l2": 0.02})
    assert base.get_layer("block13_sepconv1").pointwise_regularizer.get_config()["l2"] == \
        pytest.approx(1e-2)


@pytest.fixture(scope="module")
def two_classes(data, tmp_path_factory):
    """Two of the three class folders."""
    import shutil
    folder = tmp_path_factory.mktemp("binary") / "data"
    for name in sorted(p.name for p in data.iterdir())[:2]:
        shutil.copytree(data / name, folder / name)
    return folder


def binary_model(keras, activation):
    """The keras.io transfer-learning guide's head: a frozen base, pooling, ``Dense(1)``."""
    layers = keras.layers
    base = own_models._base(keras, 0, SIZE)
    base.trainable = False
    inputs = keras.Input(SIZE + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    x = layers.Dense(8, activation="relu", name="fc1")(x)
    return randomize_head(keras.Model(inputs, layers.Dense(1, activation=activation,
                                                           name="out")(x)), 0)


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
    model = binary_model(keras, activation)
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
