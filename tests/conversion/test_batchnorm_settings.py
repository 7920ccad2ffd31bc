"""A file's BatchNorm momentum and epsilon, base and head, are the checkpoint's: keras2mxnet
records them, the converted network computes Keras' outputs with them (an epsilon of 0.1
changes the output by far more than the tolerance), fine-tuning moves the running statistics
by the file's momentum as Keras' ``fit`` does, and mxnet2keras gives them back."""
import json

import mxnet as mx
import numpy as np
import pytest

import own_models
import xception_mx as xm
from conftest import run_tool
from reference_models import randomize_head
from shapes_dataset import write_shapes_dataset
from xception_mx.images.datasets import ImageDataset
from xception_mx.images.sources import open_source

SIZE = (71, 71)
SETTINGS = {"block1_conv1_bn": {"momentum": 0.9, "epsilon": 0.01},
            "block14_sepconv2_bn": {"momentum": 0.5, "epsilon": 0.1},
            "fc1_bn": {"momentum": 0.8, "epsilon": 0.001}}


def model_with_settings(keras):
    """A base + head model whose base trains (Keras 3 ``fit``), two base BatchNorms and the
    head's with settings of their own."""
    layers = keras.layers
    base = own_models._base(keras, 0, SIZE)
    for layer in base.layers:
        if layer.name in SETTINGS:
            layer.momentum, layer.epsilon = (SETTINGS[layer.name]["momentum"],
                                             SETTINGS[layer.name]["epsilon"])
    inputs = keras.Input(SIZE + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs))
    x = layers.Dense(8, activation="relu", name="fc1")(x)
    x = layers.BatchNormalization(momentum=0.8, name="fc1_bn")(x)
    return randomize_head(keras.Model(inputs, layers.Dense(3, name="out")(x)), 0)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    keras = own_models.import_keras()
    folder = tmp_path_factory.mktemp("bn_settings")
    model = model_with_settings(keras)
    path = own_models.save(model, str(folder / "m.keras"))
    assert run_tool("keras2mxnet", path, "-o", folder / "mx").returncode == 0
    return keras, model, path, folder


def test_the_file_batchnorm_settings_are_recorded_and_computed_with(converted):
    keras, model, path, folder = converted
    meta = json.loads((folder / "mx-meta.json").read_text())
    assert meta["batchnorm"] == SETTINGS
    x = np.random.RandomState(0).uniform(-1, 1, (4,) + SIZE + (3,)).astype(np.float32)
    theirs = keras.models.load_model(path, compile=False, safe_mode=True).predict(x, verbose=0)
    ours = xm.load(str(folder / "mx"), precision="fp32").logits(x.transpose(0, 3, 1, 2))
    scale = np.abs(theirs).max()
    deviation = np.abs(ours - theirs).max() / scale
    for layer in model.get_layer("xception").layers:
        if layer.name in SETTINGS:
            layer.epsilon = 1e-3                              # Keras' default
    default = model.predict(x, verbose=0)
    assert deviation <= 1e-5
    assert np.abs(default - theirs).max() / scale > 100 * 1e-5    # the setting matters


def test_finetuning_moves_running_statistics_by_the_file_momentum_as_keras_fit(converted,
                                                                               tmp_path):
    keras, model, path, folder = converted
    data = tmp_path / "data"
    write_shapes_dataset(str(data), per_class=4, seed=2, size=(80, 80))
    result = run_tool("xception-finetune", data, "--out", tmp_path / "run", "--pretrained",
                      folder / "mx", "--epochs", "1", "--batch-size", "12", "--recipe",
                      "default", "--lr", "1e-9", "--pipeline-augmentation", "off",
                      "--workers", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    images = ImageDataset(open_source(str(data)), range(12), SIZE, True, augment=False)
    x = np.stack([images[i][0] for i in range(12)]).transpose(0, 2, 3, 1)
    y = np.array([int(images[i][1]) for i in range(12)])
    keras_model = keras.models.load_model(path, compile=False, safe_mode=True)
    before = {name: layer.moving_mean.numpy() for name, layer in _batchnorms(keras_model)}
    keras_model.compile(optimizer=keras.optimizers.SGD(1e-9),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras_model.fit(x, y, batch_size=12, epochs=1, shuffle=False, verbose=0)
    ours = {k: v.asnumpy() for k, v in mx.nd.load(str(tmp_path / "run" /
                                                     "epoch-0001.params")).items()}
    for name, layer in _batchnorms(keras_model):
        moved = layer.moving_mean.numpy() - before[name]
        deviation = np.linalg.norm(ours[name + "_running_mean"] - layer.moving_mean.numpy())
        assert deviation <= 1e-4 * np.linalg.norm(moved), name
    exported = json.loads((tmp_path / "run" / "model-meta.json").read_text())
    assert exported["batchnorm"] == SETTINGS                        # a next run keeps them


def _batchnorms(model):
    base = model.get_layer("xception")
    return [(name, base.get_layer(name) if name != "fc1_bn" else model.get_layer(name))
            for name in SETTINGS]


def test_mxnet2keras_gives_the_settings_back(converted, tmp_path):
    keras, _, _, folder = converted
    out = tmp_path / "back.keras"
    result = run_tool("mxnet2keras", folder / "mx", "-o", out)
    assert result.returncode == 0, result.stderr[-2000:]
    back = keras.models.load_model(str(out), compile=False, safe_mode=True)
    for name, layer in _batchnorms(back):
        assert (layer.momentum, layer.epsilon) == pytest.approx(
            (SETTINGS[name]["momentum"], SETTINGS[name]["epsilon"])), name


def test_a_plain_xception_with_its_own_settings_converts_and_passes_parity(tmp_path):
    """Plain Xception saved whole: the checkpoint computes what Keras' load of the file
    computes, and xception-parity's Keras side (Keras' Xception with the file's weights)
    takes the file's settings too."""
    from reference_models import randomize_batchnorm
    from xception_mx.keras_side import keras_xception
    keras = own_models.import_keras()
    keras.utils.set_random_seed(1)
    model = randomize_batchnorm(keras_xception(classes=4, input_shape=SIZE), 1)
    for layer in model.layers:
        if layer.name in SETTINGS:
            layer.momentum, layer.epsilon = (SETTINGS[layer.name]["momentum"],
                                             SETTINGS[layer.name]["epsilon"])
    path = own_models.save(model, str(tmp_path / "plain.keras"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx", "--input-shape", "71",
                    "71").returncode == 0
    meta = json.loads((tmp_path / "mx-meta.json").read_text())
    assert meta["batchnorm"] == {k: v for k, v in SETTINGS.items() if k != "fc1_bn"}
    x = np.random.RandomState(0).uniform(-1, 1, (2,) + SIZE + (3,)).astype(np.float32)
    theirs = keras.models.load_model(path, compile=False, safe_mode=True).predict(x, verbose=0)
    ours = xm.load(str(tmp_path / "mx"), precision="fp32").logits(x.transpose(0, 3, 1, 2))
    assert np.abs(ours - theirs).max() <= 1e-5
    result = run_tool("xception-parity", "--keras", path, "--mxnet", tmp_path / "mx",
                      "--random", "2")
    assert result.returncode == 0 and "PASS" in result.stdout, result.stdout + result.stderr
