"""A user's own model in Gluon: preprocessing, the Xception base
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
size the base computes at (``own_model_inputs``); without one, the base
computes at the input's size.
Parameters are named after the Keras layers (``fc1_weight``,
``fc1_bn_gamma``, ``normalization_mean``); the base keeps Xception's names.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from xception_mx.model.head_layers import ACTIVATIONS, HEAD_CLASSES, HeadLayer
from xception_mx.model.regularizers import Regularizer
from xception_mx.model.training_only import REGULARIZER_CLASSES, inference_layers

from xception_mx.model.own_model_inputs import (base_input_size, check_model_input, known_op,
                                               preprocess_blocks, spec_channels)
from xception_mx.model.xception import (FEATURE_CHANNELS, Xception, check_input_shape,
                                        pool_input_sizes)

def branches(spec):
    """The outputs' own chains after the head forks, ``[{"name", "layers"}]`` in Keras'
    output order; ``[]`` for a model with one output (its head ends in it)."""
    return spec.get("branches") or []


def head_layers(spec):
    """Every head layer, the shared ones first, then each output's."""
    return list(spec["head"]) + [layer for b in branches(spec) for layer in b["layers"]]


def check_spec(spec):
    """Refuse a spec this module cannot build (``ValueError`` naming the entry)."""
    for op in spec["preprocess"]:
        if not known_op(op):
            raise ValueError("unknown preprocessing op %r" % (op,))
    if spec["base"]["pooling"] not in (None, "avg", "max"):
        raise ValueError("base pooling must be None, 'avg' or 'max'")
    if any(not b["layers"] for b in branches(spec)):
        raise ValueError("an output's branch has no layers")
    for layer in head_layers(spec):
        if layer["class"] not in HEAD_CLASSES + REGULARIZER_CLASSES:
            raise ValueError("head layer %s: unknown class %s" % (layer["name"], layer["class"]))
        if "activation" in layer and layer["activation"] not in ACTIVATIONS:
            raise ValueError("head layer %s: unknown activation %s"
                             % (layer["name"], layer["activation"]))


def _feature_map_flags(layers, mapped):
    found = []
    for layer in layers:
        found.append(mapped)
        if layer["class"] in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten"):
            mapped = False
    return found


def reads_feature_map(spec, branch=None):
    """Per head layer (of ``branch``'s chain after the shared head, if given), whether what
    enters it is the base's feature map (C, H, W) rather than a vector: until the first
    pooling or ``Flatten``, unless the base pools itself."""
    flags = _feature_map_flags(spec["head"] + (branch or {}).get("layers", []),
                               spec["base"].get("pooling") is None)
    return flags[len(spec["head"]):] if branch else flags


def head_has_flatten(spec):
    """Whether the head flattens a feature map (so that its Dense fits one input size).  A
    ``Flatten`` of a vector (after pooling) is the identity, as in Keras."""
    pairs = list(zip(spec["head"], reads_feature_map(spec)))
    for branch in branches(spec):
        pairs += zip(branch["layers"], reads_feature_map(spec, branch))
    return any(layer["class"] == "Flatten" and mapped for layer, mapped in pairs)


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


def network_symbol(net):
    """The symbol of a network on input ``data``: several outputs grouped, in order."""
    out = net(mx.sym.var("data"))
    return mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out


def output_kind(spec, branch=None):
    """What the model (or the output ``branch`` of a head that forks) outputs:
    ``"probabilities"`` (ends in softmax), ``"logits"`` (ends in a linear layer),
    ``"scores"`` (another activation, sigmoid for multi-label heads, say) or
    ``"features"`` (no Dense at all)."""
    layers = inference_layers(spec["head"] + (branch or {}).get("layers", []))
    if not any(layer["class"] == "Dense" for layer in layers):
        return "features"
    last = layers[-1]
    activation = "softmax" if last["class"] == "Softmax" else last.get("activation", "linear")
    if last["class"] in ("ReLU", "LeakyReLU"):
        return "scores"
    if last["class"] == "BatchNormalization" or activation == "linear":
        return "logits"
    return "probabilities" if activation == "softmax" else "scores"


def last_dense(spec):
    """``(index, layer)`` of the head's last ``Dense``, or ``None`` for a head without one."""
    found = [(i, layer) for i, layer in enumerate(spec["head"]) if layer["class"] == "Dense"]
    return found[-1] if found else None


def sigmoid_units(spec):
    """The units of a head that ends in sigmoid scores or their logits: its last ``Dense``
    with ``activation="sigmoid"``, or linear and followed by ``Activation("sigmoid")`` alone,
    or (one unit) a linear logit; ``None`` for any other head."""
    found = last_dense(spec)
    if found is None:
        return None
    at, last = found
    after = inference_layers(spec["head"][at + 1:])
    sigmoid_after = len(after) == 1 and after[0]["class"] == "Activation" and \
        after[0]["activation"] == "sigmoid" and last["activation"] == "linear"
    if last["activation"] == "sigmoid" and not after or sigmoid_after or \
            last["units"] == 1 and last["activation"] == "linear" and not after:
        return last["units"]
    return None


def is_binary_head(spec):
    """Whether the head ends in one unit, a logit (``Dense(1)``) or its sigmoid: a binary
    classifier, which Keras trains with binary cross-entropy on two classes (class 1 the
    sigmoid's)."""
    return sigmoid_units(spec) == 1


def is_multilabel_head(spec):
    """Whether the head ends in k > 1 sigmoid units (``Dense(k, activation="sigmoid")``, or
    linear and an ``Activation("sigmoid")``): a multi-label classifier, which Keras trains
    with binary cross-entropy on multi-hot labels."""
    return (sigmoid_units(spec) or 0) > 1


def head_units(spec, input_size, branch=None):
    """``(units, output shape)``: the feature size entering each head layer (each of
    ``branch``'s, when given, after the shared ones) and the shape leaving the last."""
    shape = feature_shape(spec, input_size)
    if branch:
        shape = head_units(spec, input_size)[1]
    units = []
    for layer in (branch["layers"] if branch else spec["head"]):
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


class OwnModelNet(HybridBlock):
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
            self.head = self._layers("head%d", spec["head"], units, reads_feature_map(spec),
                                     frozen_bn)
            self.branches, self.output_shapes = [], []
            for k, branch in enumerate(branches(spec)):
                units, shape = head_units(spec, self.input_size, branch)
                self.branches.append(self._layers("output%d_%%d" % k, branch["layers"], units,
                                                  reads_feature_map(spec, branch), frozen_bn))
                self.output_shapes.append(shape)

    def _layers(self, child_name, layers, units, mapped, frozen_bn):
        blocks = []
        for i, (layer, n, on_map) in enumerate(zip(layers, units, mapped)):
            blocks.append(Regularizer(layer, on_map) if layer["class"] in REGULARIZER_CLASSES
                          else HeadLayer(layer, n, frozen_bn, on_map))
            self.register_child(blocks[-1], child_name % i)
        return blocks

    def hybrid_forward(self, F, x):
        for block in self.preprocess:
            x = block(x)
        if self.preprocess:
            x = F.identity(x, name=PREPROCESSED_OUTPUT[:-len("_output")])
        x = self.base(x)
        for block in self.head:
            x = block(x)
        if not self.branches:
            return x
        outputs = []
        for chain in self.branches:            # several outputs, in Keras' order
            y = x
            for block in chain:
                y = block(y)
            outputs.append(y)
        return tuple(outputs)

    def head_parameter_names(self):
        """Names of the head's parameters (what trains while the base is frozen)."""
        return [n for block in self.head + sum(self.branches, []) for n in block.collect_params()]

    def config(self):
        """JSON-ready record of the network (``PREFIX-meta.json``'s ``model``): with several
        outputs, ``outputs`` lists each one's name, size and kind."""
        record = {"kind": "transfer", "input_shape": list(self.input_size),
                  "channels": spec_channels(self.spec),
                  "classes": self.output_shape[0] if len(self.output_shape) == 1 else None,
                  "transfer": self.spec}
        if self.branches:
            record["classes"] = None
            record["outputs"] = [{"name": b["name"], "units": shape[0] if len(shape) == 1
                                  else None, "kind": output_kind(self.spec, b)}
                                 for b, shape in zip(branches(self.spec), self.output_shapes)]
        return record
