"""Layout transforms between Keras (channels-last, TF) and MXNet (NCHW) tensors.

One small pure function per layout change, each with its permutation as a
named constant, and the inverse next to it (for ``mxnet2keras``).
"""
import numpy as np

# Conv2D kernel (kh, kw, in, out) -> MXNet Convolution weight (out, in, kh, kw)
HWIO_TO_OIHW = (3, 2, 0, 1)
OIHW_TO_HWIO = (2, 3, 1, 0)
# DepthwiseConv2D kernel (kh, kw, channels, multiplier=1) -> grouped
# Convolution weight (channels, 1, kh, kw), one group per channel
HWCM_TO_CMHW = (2, 3, 0, 1)
CMHW_TO_HWCM = (2, 3, 0, 1)
# Dense kernel (in, out) -> FullyConnected weight (out, in)
IO_TO_OI = (1, 0)
OI_TO_IO = (1, 0)


def _permute(array, axes):
    return np.ascontiguousarray(np.transpose(array, axes))


def conv_kernel(kernel):
    """Keras ``Conv2D`` kernel ``(kh, kw, in, out)`` -> MXNet ``(out, in, kh, kw)``."""
    return _permute(kernel, HWIO_TO_OIHW)


def conv_kernel_to_keras(weight):
    """MXNet ``(out, in, kh, kw)`` -> Keras ``(kh, kw, in, out)``."""
    return _permute(weight, OIHW_TO_HWIO)


def depthwise_kernel(kernel):
    """Keras depthwise kernel ``(kh, kw, C, 1)`` -> MXNet grouped ``(C, 1, kh, kw)``."""
    return _permute(kernel, HWCM_TO_CMHW)


def depthwise_kernel_to_keras(weight):
    """MXNet grouped ``(C, 1, kh, kw)`` -> Keras depthwise ``(kh, kw, C, 1)``."""
    return _permute(weight, CMHW_TO_HWCM)


def pointwise_kernel(kernel):
    """Keras pointwise kernel ``(1, 1, in, out)`` -> MXNet 1x1 ``(out, in, 1, 1)``."""
    return conv_kernel(kernel)


def pointwise_kernel_to_keras(weight):
    """MXNet 1x1 ``(out, in, 1, 1)`` -> Keras pointwise ``(1, 1, in, out)``."""
    return conv_kernel_to_keras(weight)


def dense_kernel(kernel):
    """Keras ``Dense`` kernel ``(in, out)`` -> MXNet ``FullyConnected`` ``(out, in)``."""
    return _permute(kernel, IO_TO_OI)


def dense_kernel_to_keras(weight):
    """MXNet ``(out, in)`` -> Keras ``(in, out)``."""
    return _permute(weight, OI_TO_IO)


def identity(vector):
    """BN statistics, gamma, beta and biases keep their layout."""
    return np.ascontiguousarray(vector)


def channel_vector(vector):
    """A per-channel statistic (``Normalization`` mean/variance, stored as
    ``(C,)`` or broadcastable ``(1, 1, 1, C)``) -> ``(C,)``."""
    return np.ascontiguousarray(np.ravel(vector))


FORWARD = {
    "conv_kernel": conv_kernel,
    "depthwise_kernel": depthwise_kernel,
    "pointwise_kernel": pointwise_kernel,
    "dense_kernel": dense_kernel,
    "identity": identity,
    "channel_vector": channel_vector,
}
INVERSE = {
    "conv_kernel": conv_kernel_to_keras,
    "depthwise_kernel": depthwise_kernel_to_keras,
    "pointwise_kernel": pointwise_kernel_to_keras,
    "dense_kernel": dense_kernel_to_keras,
    "identity": identity,
    "channel_vector": identity,
}


def transformed_shape(name, shape):
    """The shape ``FORWARD[name]`` gives to a tensor of ``shape``."""
    axes = {"conv_kernel": HWIO_TO_OIHW, "depthwise_kernel": HWCM_TO_CMHW,
            "pointwise_kernel": HWIO_TO_OIHW, "dense_kernel": IO_TO_OI}.get(name)
    if name == "channel_vector":
        return (int(np.prod(shape)),)
    return tuple(shape) if axes is None else tuple(shape[a] for a in axes)
