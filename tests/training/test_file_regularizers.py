"""The file's regularizers act in fine-tuning as in Keras' ``fit`` (kernel, bias, depthwise,
pointwise and activity regularizers, base and head; the loss Keras reports), and mxnet2keras
gives them back."""
import json

import pytest

import own_models
from conftest import run_tool
from recipe_runs import (CLASSES, HEAD, PER_CLASS, SIZE, finetune_and_compare,
                         load_saved, momentum_sgd, write_data)
from reference_models import randomize_head



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory)


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
