"""A model Keras 2 wrote trains its moving variances as Keras 2 does (issue #28): Keras 2's
fused BatchNorm averages the Bessel-corrected batch variance, MXNet the biased one, and
``Keras2Variance`` makes MXNet's update Keras 2's."""
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from xception_mx.training.keras2_statistics import Keras2Variance
from xception_mx.keras_side import import_keras


def _keras2_moving_variance(x_nhwc, start, momentum):
    import_keras()
    import tf_keras
    layer = tf_keras.layers.BatchNormalization(momentum=momentum)
    layer.build(x_nhwc.shape)
    layer.moving_variance.assign(start)
    assert layer.fused                          # the kernel Keras 2 picks for feature maps
    layer(x_nhwc, training=True)
    return layer.moving_variance.numpy()


def _mxnet_moving_variance(x_nchw, start, momentum, keras2):
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.BatchNorm(axis=1, momentum=momentum, in_channels=x_nchw.shape[1]))
    net.initialize()
    net[0].running_var.set_data(mx.nd.array(start))
    correction = Keras2Variance(net) if keras2 else None
    with autograd.record(train_mode=True):
        y = net(mx.nd.array(x_nchw))
    y.backward()            # oneDNN's BatchNorm updates its moving statistics here
    if correction:
        correction.apply()
    return net[0].running_var.data().asnumpy()


def test_the_moving_variance_of_a_keras2_model_is_keras2s_fused_update():
    rng = np.random.RandomState(0)
    x = rng.normal(0.5, 2.0, (2, 4, 3, 3)).astype(np.float32)       # n = 2 x 3 x 3 = 18
    start = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    theirs = _keras2_moving_variance(x.transpose(0, 2, 3, 1), start, 0.9)
    ours = _mxnet_moving_variance(x, start, 0.9, keras2=True)
    assert np.abs(ours - theirs).max() <= 1e-6 * np.abs(theirs).max()
    biased = _mxnet_moving_variance(x, start, 0.9, keras2=False)    # MXNet's, Keras 3's
    assert np.abs(biased - theirs).max() > 0.01 * np.abs(theirs - start).max()
    expected = 0.9 * start + 0.1 * x.var(axis=(0, 2, 3), ddof=1)    # Bessel-corrected
    assert np.allclose(ours, expected, rtol=1e-6)
