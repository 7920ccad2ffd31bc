"""The layers of an own model's head with Keras' inference semantics, on NCHW feature
maps: pooling, ``Flatten``, ``Dense`` and its activations, ``BatchNormalization``, the
activation layers.  Each one's output is named ``<Keras layer name>_out_output``."""
import math

import numpy as np
from mxnet.gluon import HybridBlock, nn

from xception_mx.model.xception import BN_EPSILON

# Layers that compute the identity at inference.  Those of them that act in training are
# in the network too (``training_only``); the others (``SpatialDropout1D``/``3D``, which no
# image head can hold, ``ActivityRegularization``) are left out.
IDENTITY_LAYERS = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness",
)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _linear(F, x):
    return x


def _gelu(F, x):
    return 0.5 * x * (1.0 + F.erf(x / math.sqrt(2.0)))


def _selu(F, x):
    return SELU_SCALE * F.where(x > 0, x, SELU_ALPHA * (F.exp(F.minimum(x, 0.0)) - 1.0))


def _elu(F, x):
    return F.where(x > 0, x, F.exp(F.minimum(x, 0.0)) - 1.0)


ACTIVATIONS = {
    "linear": _linear,
    "relu": lambda F, x: F.relu(x),
    "sigmoid": lambda F, x: F.sigmoid(x),
    "softmax": lambda F, x: F.softmax(x, axis=-1),
    "tanh": lambda F, x: F.tanh(x),
    "elu": _elu,
    "selu": _selu,
    "softplus": lambda F, x: F.Activation(x, act_type="softrelu"),
    "swish": lambda F, x: x * F.sigmoid(x),
    "silu": lambda F, x: x * F.sigmoid(x),
    "gelu": _gelu,
}
HEAD_CLASSES = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dense",
                "Activation", "ReLU", "LeakyReLU", "Softmax", "BatchNormalization")


class HeadLayer(HybridBlock):
    """One layer of the head, Keras semantics, NCHW feature maps; its output
    is named ``layer_output_name(layer name)``."""

    def __init__(self, layer, in_units, frozen_bn=False, on_feature_map=True, **kwargs):
        super().__init__(prefix=layer["name"] + "_", **kwargs)
        self.layer, self.on_feature_map = layer, on_feature_map
        cls = layer["class"]
        with self.name_scope():
            if cls == "Dense":
                self.dense = nn.Dense(layer["units"], use_bias=layer["use_bias"],
                                      in_units=in_units, prefix="")
            elif cls == "BatchNormalization":
                self.bn = nn.BatchNorm(axis=1, momentum=layer.get("momentum", 0.99),
                                       epsilon=layer.get("epsilon", BN_EPSILON),
                                       center=layer.get("center", True),
                                       scale=layer.get("scale", True), in_channels=in_units,
                                       prefix="", use_global_stats=frozen_bn)

    def hybrid_forward(self, F, x):
        return F.identity(self._apply(F, x), name="out")

    def _apply(self, F, x):
        layer, cls = self.layer, self.layer["class"]
        if cls == "GlobalAveragePooling2D":
            return F.flatten(F.mean(x, axis=(2, 3), keepdims=True))
        if cls == "GlobalMaxPooling2D":
            return F.flatten(F.max(x, axis=(2, 3), keepdims=True))
        if cls == "Flatten" and not self.on_feature_map:
            return x                               # a vector already: Keras' rank-2 Flatten
        if cls == "Flatten":                       # Keras flattens NHWC: (h, w, c) order
            return F.flatten(F.transpose(x, (0, 2, 3, 1)))
        if cls == "Dense":
            return ACTIVATIONS[layer["activation"]](F, self.dense(x))
        if cls == "Activation":
            return ACTIVATIONS[layer["activation"]](F, x)
        if cls == "Softmax":
            return F.softmax(x, axis=-1)
        if cls == "LeakyReLU":
            # TF's LeakyRelu holds its slope in float32, in a float64 model too (MXNet's
            # LeakyReLU strays from both in float64); TF's gradient at 0 is the slope's
            return F.where(x > 0, x, float(np.float32(layer["negative_slope"])) * x)
        if cls == "ReLU":
            y = F.where(x >= layer["threshold"], x,
                        layer["negative_slope"] * (x - layer["threshold"]))
            if layer.get("max_value") is not None:
                y = F.minimum(y, float(layer["max_value"]))
            return y
        return self.bn(x)
