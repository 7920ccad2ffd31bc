"""xception-finetune trains with the recipe the Keras file was compiled with: with no
optimizer, learning-rate or loss flag, a few full-batch epochs give Keras ``fit``'s losses
and weights on the same pixels (``recipe_runs.finetune_and_compare``), for each supported
optimizer, schedule and loss, in Keras 2 and Keras 3; a flag replaces its part only; what is
not supported is refused in one line.  The model has a frozen base (``base.trainable =
False``, which Keras runs in inference mode) and a two-Dense head."""
import csv
import json

import pytest

import own_models
from conftest import assert_bad_input, run_tool
from recipe_runs import (CLASSES, HEAD, PER_CLASS, finetune_and_compare,
                         frozen_base_model, write_data)

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


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory)


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


def test_a_frozen_base_normalising_with_batch_statistics_fails_the_comparison(
        data, tmp_path, monkeypatch):
    """The comparison with ``fit`` sees a frozen BatchNorm that normalises with the batch's
    statistics (the named fault ``frozen-bn-on-batch-statistics``), although the frozen
    parameters themselves stay bit-equal: the head it feeds trains on other features."""
    keras = own_models.import_keras()
    model = frozen_base_model(keras, None)
    model.compile(**adam(keras))
    path = own_models.save(model, str(tmp_path / "m.keras"))
    monkeypatch.setenv("XCEPTION_MX_FAULT", "frozen-bn-on-batch-statistics")
    with pytest.raises(AssertionError, match=r"\('fc1\.kernel'"):
        finetune_and_compare(keras, path, adam, data, tmp_path, HEAD)


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
    with open(run / "metrics.csv") as f:
        return [float(row["learning_rate"]) for row in csv.DictReader(f)]


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
