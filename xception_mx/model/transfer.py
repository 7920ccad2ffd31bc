"""A user's transfer-learning model in Gluon: preprocessing, the Xception base
and a head, rebuilt from a JSON-ready ``spec`` (recorded in
``PREFIX-meta.json`` by ``keras2mxnet``) with Keras' inference semantics.

The spec::

    {"input_shape": [H, W], "channels": 3 (1 for a grayscale model; 3 when absent),
     "preprocess": [{"op": "cast", "dtype": "uint8"},   # an integer-typed Keras input
                    {"op": "resize", "name": "resizing", "size": [320, 320],
                     "interpolation": "bilinear"},
                    {"op": "center_crop", "name": "crop", "size": [299, 299]},
                    {"op": "divide", "value": 127.5}, {"op": "subtract", "value": 1.0},
                    {"op": "normalize", "name": "normalization"}, ...],
     "base": {"name": "xception" or None (flattened), "pooling": None | "avg" | "max",
              "inference_mode": true when called as base(x, training=False)},
     "head": [{"class": "GlobalAveragePooling2D", "name": ...},
              {"class": "Dense", "name": "fc1", "units": 256, "use_bias": true,
               "activation": "relu"},
              {"class": "BatchNormalization", "name": "fc1_bn", "epsilon": 0.001, ...},
              ...]}

The input is the model's own input, NCHW: raw pixels when the model rescales
inside, Keras' ``x / 127.5 - 1`` when it expects preprocessed input.  A
``resize`` or ``center_crop`` (Keras ``Resizing``, ``CenterCrop``) sets the
size the base computes at (``transfer_inputs``); without one, the base
computes at the input's size.
Parameters are named after the Keras layers (``fc1_weight``,
``fc1_bn_gamma``, ``normalization_mean``); the base keeps Xception's names.
"""
import math

from mxnet.gluon import HybridBlock, nn

from xception_mx.model.transfer_inputs import (base_input_size, check_model_input, known_op,
                                               preprocess_blocks, spec_channels)
from xception_mx.model.xception import (BN_EPSILON, FEATURE_CHANNELS, Xception, check_input_shape,
                                        pool_input_sizes)

# Layers that compute the identity at inference.
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


def check_spec(spec):
    """Refuse a spec this module cannot build (``ValueError`` naming the entry)."""
    for op in spec["preprocess"]:
        if not known_op(op):
            raise ValueError("unknown preprocessing op %r" % (op,))
    if spec["base"]["pooling"] not in (None, "avg", "max"):
        raise ValueError("base pooling must be None, 'avg' or 'max'")
    for layer in spec["head"]:
        if layer["class"] not in HEAD_CLASSES:
            raise ValueError("head layer %s: unknown class %s" % (layer["name"], layer["class"]))
        if "activation" in layer and layer["activation"] not in ACTIVATIONS:
            raise ValueError("head layer %s: unknown activation %s"
                             % (layer["name"], layer["activation"]))


def reads_feature_map(spec):
    """Per head layer, whether what enters it is the base's feature map (C, H, W) rather than
    a vector: until the first pooling or ``Flatten``, unless the base pools itself."""
    mapped, found = spec["base"].get("pooling") is None, []
    for layer in spec["head"]:
        found.append(mapped)
        if layer["class"] in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten"):
            mapped = False
    return found


def head_has_flatten(spec):
    """Whether the head flattens a feature map (so that its Dense fits one input size).  A
    ``Flatten`` of a vector (after pooling) is the identity, as in Keras."""
    return any(layer["class"] == "Flatten" and mapped
               for layer, mapped in zip(spec["head"], reads_feature_map(spec)))


def feature_shape(spec, input_size):
    """(C, H, W) or (C,) of what the base gives the head (for a model input of
    ``input_size``)."""
    spatial = tuple(-(-pool_input_sizes(s)[-1] // 2) for s in base_input_size(spec, input_size))
    if spec["base"]["pooling"]:
        return (FEATURE_CHANNELS,)
    return (FEATURE_CHANNELS,) + spatial


def layer_output_name(name):
    """The symbol output holding what Keras layer ``name`` of the head outputs."""
    return "%s_out_output" % name


PREPROCESSED_OUTPUT = "preprocessed_output"      # what enters the base


def output_kind(spec):
    """What the model outputs: ``"probabilities"`` (ends in softmax),
    ``"logits"`` (ends in a linear layer), ``"scores"`` (another activation,
    sigmoid for multi-label heads, say) or ``"features"`` (no Dense at all)."""
    if not any(layer["class"] == "Dense" for layer in spec["head"]):
        return "features"
    last = spec["head"][-1]
    activation = "softmax" if last["class"] == "Softmax" else last.get("activation", "linear")
    if last["class"] in ("ReLU", "LeakyReLU"):
        return "scores"
    if last["class"] == "BatchNormalization" or activation == "linear":
        return "logits"
    return "probabilities" if activation == "softmax" else "scores"


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
            return F.LeakyReLU(x, act_type="leaky", slope=layer["negative_slope"])
        if cls == "ReLU":
            y = F.where(x >= layer["threshold"], x,
                        layer["negative_slope"] * (x - layer["threshold"]))
            if layer.get("max_value") is not None:
                y = F.minimum(y, float(layer["max_value"]))
            return y
        return self.bn(x)


def head_units(spec, input_size):
    """The feature size entering each head layer."""
    shape = feature_shape(spec, input_size)
    units = []
    for layer in spec["head"]:
        units.append(shape[0] if len(shape) in (1, 3) else None)
        cls = layer["class"]
        if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            shape = (shape[0],)
        elif cls == "Flatten":
            shape = (int(shape[0] * shape[1] * shape[2]),) if len(shape) == 3 else shape
        elif cls == "Dense":
            if len(shape) == 3:
                raise ValueError("head layer %s: Dense on a feature map (add pooling or "
                                 "Flatten before it)" % layer["name"])
            shape = (layer["units"],)
    return units, shape


class TransferNet(HybridBlock):
    """Preprocessing -> Xception base (notop) -> head, from ``spec``.

    ``input_shape`` overrides the spec's (refused with a ``Flatten`` head, whose
    Dense size depends on it, unless the model resizes inside);
    ``channel_block``: the base's, see ``Xception``."""

    def __init__(self, spec, input_shape=None, frozen_bn=False, channel_block=None, **kwargs):
        kwargs.setdefault("prefix", "")
        super().__init__(**kwargs)
        check_spec(spec)
        self.spec = spec
        size = tuple(input_shape or spec["input_shape"])
        if head_has_flatten(spec) and base_input_size(spec, size) != base_input_size(
                spec, spec["input_shape"]):
            raise ValueError("the head flattens the feature map, so its Dense layer fits only "
                             "the model's own input size %dx%d" % tuple(spec["input_shape"]))
        self.input_size = check_model_input(spec, size)
        self.base_size = check_input_shape(base_input_size(spec, self.input_size))
        units, self.output_shape = head_units(spec, self.input_size)
        with self.name_scope():
            self.preprocess = preprocess_blocks(spec, self.input_size)
            for i, block in enumerate(self.preprocess):
                self.register_child(block, "preprocess%d" % i)
            self.base = Xception(include_top=False, pooling=spec["base"]["pooling"],
                                 input_shape=self.base_size + (spec_channels(spec),),
                                 frozen_bn=frozen_bn,
                                 channel_block=channel_block, prefix="")
            self.head = []
            for i, (layer, n, mapped) in enumerate(zip(spec["head"], units,
                                                       reads_feature_map(spec))):
                block = HeadLayer(layer, n, frozen_bn, mapped)
                self.register_child(block, "head%d" % i)
                self.head.append(block)

    def hybrid_forward(self, F, x):
        for block in self.preprocess:
            x = block(x)
        if self.preprocess:
            x = F.identity(x, name=PREPROCESSED_OUTPUT[:-len("_output")])
        x = self.base(x)
        for block in self.head:
            x = block(x)
        return x

    def head_parameter_names(self):
        """Names of the head's parameters (what trains while the base is frozen)."""
        return [n for block in self.head for n in block.collect_params()]

    def config(self):
        """JSON-ready record of the network (``PREFIX-meta.json``'s ``model``)."""
        return {"kind": "transfer", "input_shape": list(self.input_size),
                "channels": spec_channels(self.spec),
                "classes": self.output_shape[0] if len(self.output_shape) == 1 else None,
                "transfer": self.spec}
