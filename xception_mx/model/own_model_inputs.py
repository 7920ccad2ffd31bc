"""The preprocessing an own model does inside the network, before its
base (``spec["preprocess"]``, see ``xception_mx.model.own_model``), with
Keras' semantics: scalar arithmetic (``Rescaling``, ``preprocess_input``),
the cast of an integer-typed input, ``Resizing``, ``CenterCrop`` and
``Normalization``; and the random augmentation layers, which act only in training
(``augmentation``).

A ``resize`` or ``center_crop`` sets the size the base computes at
(``base_input_size``); a model with one takes other input sizes than its
base's (``check_model_input``): any size when it resizes, at least the crop's
when it crops.
"""
from mxnet.gluon import HybridBlock

from xception_mx.model.augmentation import Augmentation
from xception_mx.model.regularizers import Regularizer
from xception_mx.model.training_only import AUGMENTATION_OPS
from xception_mx.model.xception import RGB, check_input_shape

NORMALIZATION_EPSILON = 1e-7          # keras.backend.epsilon(), Normalization's floor
SCALAR_OPS = ("multiply", "divide", "add", "subtract")
# An integer-typed Keras input casts what it is fed: toward zero, here saturated
# at the type's range (None: no clipping within float32's reach).
INTEGER_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535),
                  "int16": (-32768, 32767), "int32": None, "int64": None, "uint32": None,
                  "uint64": None}
RESIZE_INTERPOLATIONS = ("bilinear",)
SIZING_OPS = ("resize", "center_crop")


def known_op(op):
    """Whether ``op`` is a preprocessing operation this module builds."""
    if op["op"] == "cast":
        return op.get("dtype") in INTEGER_RANGES
    if op["op"] in SIZING_OPS:
        size = op.get("size") or []
        return (op["op"] == "center_crop" or op.get("interpolation") in RESIZE_INTERPOLATIONS) \
            and len(size) == 2 and all(isinstance(s, int) and s >= 1 for s in size)
    return op["op"] in SCALAR_OPS + ("normalize", "regularize") + AUGMENTATION_OPS


def preprocessed_size(spec):
    """The size the model's own ``Resizing`` or ``CenterCrop`` (the last of
    them) gives the base whatever the input's, or ``None`` (none, or
    ``spec=None``: plain Xception)."""
    sizes = [tuple(op["size"]) for op in (spec or {}).get("preprocess", [])
             if op["op"] in SIZING_OPS]
    return sizes[-1] if sizes else None


def crop_offsets(spec, input_size):
    """``[(top, left)]`` of each ``center_crop`` for an input of ``input_size``,
    as Keras computes them (``(input - crop) // 2``).

    Raises:
        ValueError: a crop larger than what reaches it (Keras would resize
            instead, with ``smart_resize``, which is not computed here).
    """
    size, offsets = tuple(input_size), []
    for op in spec["preprocess"]:
        if op["op"] == "resize":
            size = tuple(op["size"])
        elif op["op"] == "center_crop":
            crop = tuple(op["size"])
            if crop[0] > size[0] or crop[1] > size[1]:
                raise ValueError("layer '%s' (CenterCrop) crops %dx%d from a %dx%d image: the "
                                 "input must be at least that large (Keras resizes a smaller "
                                 "one instead, which is not supported)"
                                 % ((op.get("name"),) + crop + size))
            offsets.append(((size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2))
            size = crop
    return offsets


def check_model_input(spec, input_shape):
    """``(height, width)`` of an input the model takes: any size when it
    resizes inside, at least its crop's when it crops, else (plain Xception:
    ``spec=None``) a size the base takes (``check_input_shape``)."""
    shape = tuple(input_shape)
    if preprocessed_size(spec) is None:
        return check_input_shape(shape)
    shape = shape[:2] if len(shape) == 3 and shape[2] == 3 else shape
    if len(shape) != 2 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError("input_shape must be (height, width) of at least 1 pixel, got %r"
                         % (input_shape,))
    crop_offsets(spec, shape)
    return shape


def base_input_size(spec, input_size):
    """The size the base computes at for a model input of ``input_size``."""
    return preprocessed_size(spec) or tuple(input_size)


class ScalarOps(HybridBlock):
    """Scalar arithmetic, in Keras' order (``x / 127.5``, then ``- 1``...)."""

    def __init__(self, ops, **kwargs):
        super().__init__(**kwargs)
        self.ops = [(op["op"], float(op["value"])) for op in ops]

    def hybrid_forward(self, F, x):
        for op, value in self.ops:
            if op == "multiply":
                x = x * value
            elif op == "divide":
                x = x / value
            elif op == "add":
                x = x + value
            else:
                x = x - value
        return x


class IntegerCast(HybridBlock):
    """What Keras does to a value fed to an integer-typed input: truncated
    toward zero, saturated at the type's range."""

    def __init__(self, dtype, **kwargs):
        super().__init__(**kwargs)
        self.range = INTEGER_RANGES[dtype]

    def hybrid_forward(self, F, x):
        x = F.trunc(x)
        return F.clip(x, *self.range) if self.range else x


class Resize(HybridBlock):
    """Keras ``Resizing`` (bilinear, TF's half-pixel centres, no antialiasing):
    MXNet's ``BilinearResize2D`` without ``align_corners`` computes the same
    sampling positions and weights."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(size)

    def hybrid_forward(self, F, x):
        return F.contrib.BilinearResize2D(x, height=self.size[0], width=self.size[1],
                                          align_corners=False)


class CenterCrop(HybridBlock):
    """Keras ``CenterCrop`` of an input at least as large: rows ``top`` to
    ``top + height``, columns ``left`` to ``left + width``."""

    def __init__(self, size, offset, **kwargs):
        super().__init__(**kwargs)
        (self.height, self.width), (self.top, self.left) = size, offset

    def hybrid_forward(self, F, x):
        return F.slice(x, begin=(None, None, self.top, self.left),
                       end=(None, None, self.top + self.height, self.left + self.width))


class Normalization(HybridBlock):
    """Keras ``Normalization`` over channels: ``(x - mean) / max(sqrt(var), 1e-7)``;
    parameters ``<name>_mean`` and ``<name>_variance`` of shape ``(C,)``."""

    def __init__(self, name, channels=RGB, **kwargs):
        super().__init__(prefix=name + "_", **kwargs)
        with self.name_scope():
            self.mean = self.params.get("mean", shape=(channels,), grad_req="null",
                                        differentiable=False, init="zeros")
            self.variance = self.params.get("variance", shape=(channels,), grad_req="null",
                                            differentiable=False, init="ones")

    def hybrid_forward(self, F, x, mean, variance):
        mean = F.reshape(mean, (1, -1, 1, 1))
        std = F.maximum(F.sqrt(F.reshape(variance, (1, -1, 1, 1))), NORMALIZATION_EPSILON)
        return F.broadcast_div(F.broadcast_sub(x, mean), std)


def spec_channels(spec):
    """The input channels of an own model ``spec`` (3 where a spec predates the key)."""
    return int(spec.get("channels", RGB))


def preprocess_blocks(spec, input_size):
    """The blocks computing ``spec``'s preprocessing in order, for an input of
    ``input_size`` (consecutive scalar operations in one block)."""
    blocks, scalars = [], []
    offsets = iter(crop_offsets(spec, input_size))
    for op in list(spec["preprocess"]) + [None]:
        if op is not None and op["op"] in SCALAR_OPS:
            scalars.append(op)
            continue
        if scalars:
            blocks.append(ScalarOps(scalars, prefix="preprocess%d_" % len(blocks)))
            scalars = []
        if op is None:
            break
        kind = op["op"]
        blocks.append(IntegerCast(op["dtype"]) if kind == "cast" else
                      Resize(op["size"]) if kind == "resize" else
                      CenterCrop(op["size"], next(offsets)) if kind == "center_crop" else
                      Augmentation(op) if kind in AUGMENTATION_OPS else
                      Regularizer(op, on_feature_map=True) if kind == "regularize" else
                      Normalization(op["name"], spec_channels(spec)))
    return blocks
