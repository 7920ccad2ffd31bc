"""The converted checkpoint computes Keras' function: logits within 1e-4 and
the same top-5 order at 299x299, at an even size where TF pads asymmetrically
(224x224) and at a non-square size, as saved and through the fast path (channels padded
for oneDNN, fused); the notop feature map likewise."""
import mxnet as mx
import numpy as np
import pytest

from conftest import PHOTOS
from xception_mx.conversion import convert_file
import reference_models
from xception_mx import keras_side
from xception_mx.images.decode import load_images
from xception_mx.serving.fast import load_fast_network

ATOL = 1e-4
# 299: odd pool inputs everywhere; 224: even sizes, TF pads (0, 1); 257x190 mixes both.
SHAPES = [(299, 299), (224, 224), (257, 190)]


def inputs(shape, seed=0):
    photos = load_images(PHOTOS[:3], shape)
    noise = np.random.RandomState(seed).uniform(-1, 1, (2, 3) + shape).astype(np.float32)
    return np.concatenate([photos, noise])


def module_outputs(prefix, x):
    """Through the symbol API: mx.model.load_checkpoint + mx.mod.Module."""
    symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", x.shape)], for_training=False)
    module.set_params(arg_params, aux_params)
    module.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def gluon_outputs(prefix, x):
    """Through Gluon: SymbolBlock.imports."""
    net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                       prefix + "-0000.params")
    return net(mx.nd.array(x)).asnumpy()


def fast_outputs(prefix, x):
    """Through the fast fp32 path (xception-predict's, as on Intel AVX-512 CPUs): 728
    channels padded to 736, fused."""
    net, _ = load_fast_network(prefix, precision="fp32", batch_size=len(x), pad_channels="on")
    shapes = [p.data().shape for p in net.collect_params().values()]
    assert (736, 736, 1, 1) in shapes and not any(728 in s for s in shapes)
    return net(mx.nd.array(x)).asnumpy()


def assert_same_logits(keras_out, mx_out):
    assert keras_out.shape == mx_out.shape
    assert np.abs(keras_out - mx_out).max() <= ATOL
    np.testing.assert_array_equal(np.argsort(-keras_out, 1)[:, :5],
                                  np.argsort(-mx_out, 1)[:, :5])


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "%dx%d" % s)
def test_logits_match_keras_at_any_input_size(shape, reference_model, keras_files_top,
                                              tmp_path):
    keras_model = reference_models.same_weights(reference_model, input_shape=shape)
    prefix = str(tmp_path / "xception")
    convert_file(keras_files_top["legacy-h5"], prefix, input_shape=shape,
                 classifier_activation=None)
    x = inputs(shape)
    keras_out = keras_side.keras_predict(keras_model, x)
    assert np.abs(keras_out).max() > 0.5   # logits, not a degenerate output
    assert_same_logits(keras_out, module_outputs(prefix, x))
    assert_same_logits(keras_out, gluon_outputs(prefix, x))
    assert_same_logits(keras_out, fast_outputs(prefix, x))


@pytest.mark.slow
def test_softmax_output_matches_keras_probabilities(reference_model, keras_files_top, tmp_path):
    shape = (224, 224)
    keras_model = reference_models.same_weights(reference_model, input_shape=shape,
                                          classifier_activation="softmax")
    prefix = str(tmp_path / "xception")
    convert_file(keras_files_top["keras"], prefix, input_shape=shape)
    x = inputs(shape, seed=1)[-2:]
    keras_out = keras_side.keras_predict(keras_model, x)
    mx_out = gluon_outputs(prefix, x)
    np.testing.assert_allclose(mx_out.sum(1), 1, atol=1e-5)
    assert_same_logits(keras_out, mx_out)


@pytest.mark.slow
@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_notop_features_match_keras(pooling, reference_model, keras_file_notop, tmp_path):
    shape = (224, 224) if pooling else (181, 240)
    keras_model = reference_models.same_weights(reference_model, include_top=False, pooling=pooling,
                                          input_shape=shape)
    prefix = str(tmp_path / "features")
    convert_file(keras_file_notop, prefix, input_shape=shape, pooling=pooling)
    x = inputs(shape)[-3:]
    keras_out = keras_side.keras_predict(keras_model, x)
    mx_out = gluon_outputs(prefix, x)
    expected_shape = (3, 2048) if pooling else (3, 2048, 6, 8)
    assert keras_out.shape == mx_out.shape == expected_shape
    assert np.abs(keras_out - mx_out).max() <= ATOL
