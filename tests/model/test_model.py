"""The Gluon Xception has Keras' structure and semantics."""
import json

import mxnet as mx
import numpy as np
import pytest

from xception_mx import keras_side
from xception_mx import Xception, tf_same_pool_padding
from xception_mx.model.xception import pool_input_sizes


@pytest.fixture(scope="module")
def graph():
    symbol = Xception(input_shape=(224, 224))(mx.sym.var("data"))
    return json.loads(symbol.tojson())["nodes"]


@pytest.mark.parametrize("height, width", [(5, 5), (6, 6), (7, 10), (12, 9), (71, 74)])
def test_max_pool_reproduces_tf_same_padding(height, width):
    """TF pads (0, 1) on even sizes and (1, 1) on odd ones; compare with TF itself."""
    tf = keras_side.import_keras() and __import__("tensorflow")
    x = np.random.RandomState(height * width).uniform(-5, 0, (2, 3, height, width))
    x = x.astype(np.float32)
    expected = tf.nn.max_pool2d(x.transpose(0, 2, 3, 1), 3, 2, "SAME").numpy()
    pad = (tf_same_pool_padding(height), tf_same_pool_padding(width))
    pool = mx.gluon.nn.MaxPool2D(3, 2, padding=pad, ceil_mode=True)
    got = pool(mx.nd.array(x)).asnumpy().transpose(0, 2, 3, 1)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_pool_sizes_follow_the_input_size():
    assert pool_input_sizes(299) == [147, 74, 37, 19]
    assert pool_input_sizes(224) == [109, 55, 28, 14]
    assert [tf_same_pool_padding(s) for s in pool_input_sizes(224)] == [1, 1, 0, 0]


def test_depthwise_convolutions_are_single_grouped_convolutions(graph):
    convs = [n for n in graph if n["op"] == "Convolution"]
    assert len(convs) == 2 + 4 + 2 * 34
    depthwise = [n for n in convs if n["name"].endswith("_depthwise_fwd")]
    assert len(depthwise) == 34
    for node in depthwise:
        assert node["attrs"]["num_group"] == node["attrs"]["num_filter"] != "1"
        assert node["attrs"]["kernel"] == "(3, 3)" and node["attrs"]["pad"] == "(1, 1)"
    assert all(n["attrs"]["no_bias"] == "True" for n in convs)


def test_batchnorm_uses_gamma_and_keras_epsilon_and_momentum(graph):
    bns = [n for n in graph if n["op"] == "BatchNorm"]
    assert len(bns) == 2 + 4 + 34
    for node in bns:
        assert node["attrs"]["fix_gamma"] == "False"
        assert float(node["attrs"]["eps"]) == pytest.approx(1e-3)
        assert float(node["attrs"]["momentum"]) == pytest.approx(0.99)


def test_parameter_names_follow_keras_layer_names():
    names = set(Xception().collect_params().keys())
    for expected in ["block1_conv1_weight", "block1_conv1_bn_gamma",
                     "block2_sepconv1_depthwise_weight", "block2_sepconv1_pointwise_weight",
                     "block5_sepconv3_bn_running_var", "block13_residual_conv_weight",
                     "block14_sepconv2_bn_running_mean", "predictions_weight",
                     "predictions_bias"]:
        assert expected in names
    assert len(names) == 236


@pytest.mark.parametrize("kwargs, fragment", [
    ({"input_shape": (70, 299)}, "height and width >= 71"),
    ({"input_shape": (299, 299, 0)}, "channel count must be a positive integer"),
    ({"classifier_activation": "relu"}, "classifier_activation"),
    ({"include_top": False, "pooling": "sum"}, "pooling"),
    ({"classes": 0}, "classes"),
])
def test_bad_options_are_refused_with_the_value(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Xception(**kwargs)


def test_output_shapes_for_each_head():
    x = mx.nd.zeros((1, 3, 100, 131))
    for kwargs, shape in [({}, (1, 1000)), ({"include_top": False}, (1, 2048, 3, 4)),
                          ({"include_top": False, "pooling": "max"}, (1, 2048)),
                          ({"classes": 7}, (1, 7))]:
        net = Xception(input_shape=(100, 131), **kwargs)
        net.initialize()
        assert net(x).shape == shape
