"""An own model's checkpoint back to Keras: Keras 3 rebuilds the model from the
meta's spec (``model.transfer``) and takes the checkpoint's weights through
the inverse layout transforms, bit-exactly.

Layer names and weights are the original model's.  The layers that act only in training
(Dropout and its kin, the augmentation layers) come back with their settings; those the
checkpoint does not hold (``ActivityRegularization``, checkpoints written before they were
recorded) are not rebuilt.  ``preprocess_input``'s arithmetic
comes back as Keras operations (``x / 127.5``, ``- 1``), ``Rescaling`` as
``Rescaling``, ``Resizing`` and ``CenterCrop`` as themselves, a ``Normalization`` with its mean
and variance in its config.
"""
from xception_mx.keras_side import import_keras
from xception_mx.model.training_only import is_training_only
from xception_mx.model.own_model import branches, head_has_flatten, head_layers
from xception_mx.model.own_model_inputs import preprocessed_size, spec_channels

from .. import layouts
from ..errors import make_sure
from ..name_table import BN, DENSE, ROLES, TARGET
from .weights import HEAD_KINDS


def head_weights(spec, params, where):
    """``{layer name: [arrays in Keras order]}`` of the head's weighted layers."""
    weights = {}
    for layer in head_layers(spec):
        kind = HEAD_KINDS.get(layer["class"])
        if kind is None:
            continue
        skipped = {"bias"} if kind == DENSE and not layer["use_bias"] else set()
        if kind == BN:
            skipped |= {"gamma"} if not layer.get("scale", True) else set()
            skipped |= {"beta"} if not layer.get("center", True) else set()
        arrays = []
        for role in ROLES[kind]:
            if role in skipped:
                continue
            suffix, transform, _ = TARGET[(kind, role)]
            name = "%s_%s" % (layer["name"], suffix)
            make_sure(name in params, "%s: lacks %s (head layer '%s')", where, name,
                      layer["name"])
            arrays.append(layouts.INVERSE[transform](params[name]))
        weights[layer["name"]] = arrays
    return weights


def _preprocess(keras, x, spec, params, where):
    """Division and subtraction as Keras operations (``preprocess_input``'s),
    a multiplication and/or addition as ``Rescaling`` (``x * scale + offset``:
    the same float32 arithmetic)."""
    ops = [op for op in spec["preprocess"] if op["op"] != "cast"]    # the Input's dtype
    while ops:
        op = ops.pop(0)
        if op["op"] in ("divide", "subtract"):
            x = {"divide": keras.ops.divide, "subtract": keras.ops.subtract}[op["op"]](
                x, op["value"])
            continue
        if op["op"] in ("multiply", "add"):
            scale, offset = (op["value"], 0.0) if op["op"] == "multiply" else (1.0, op["value"])
            if op["op"] == "multiply" and ops and ops[0]["op"] == "add":
                offset = ops.pop(0)["value"]
            x = keras.layers.Rescaling(scale, offset)(x)
            continue
        if op["op"] == "resize":
            x = keras.layers.Resizing(*op["size"], interpolation=op["interpolation"],
                                      name=op.get("name"))(x)
            continue
        if op["op"] == "center_crop":
            x = keras.layers.CenterCrop(*op["size"], name=op.get("name"))(x)
            continue
        if is_training_only(op):
            x = _training_layer(keras, op)(x)
            continue
        stats = []
        for stat in ("mean", "variance"):
            name = "%s_%s" % (op["name"], stat)
            make_sure(name in params, "%s: lacks %s (Normalization '%s')", where, name, op["name"])
            stats.append(params[name].tolist())
        x = keras.layers.Normalization(mean=stats[0], variance=stats[1], name=op["name"])(x)
    return x


def _training_layer(keras, entry):
    """The Keras layer of a training-only head entry or augmentation operation."""
    layers, name, kind = keras.layers, entry["name"], entry.get("op")
    sampling = {k: entry[k] for k in ("fill_mode", "interpolation", "fill_value") if k in entry}
    if kind == "random_flip":
        return layers.RandomFlip(entry["mode"], name=name)
    if kind == "random_rotation":
        return layers.RandomRotation([d / 360.0 for d in entry["degrees"]], name=name,
                                     **sampling)
    if kind == "random_zoom":
        width = entry["width_zoom"]
        return layers.RandomZoom([z - 1.0 for z in entry["height_zoom"]],
                                 None if width is None else [z - 1.0 for z in width],
                                 name=name, **sampling)
    if kind == "random_translation":
        return layers.RandomTranslation(entry["height_shift"], entry["width_shift"], name=name,
                                        **sampling)
    if kind == "random_contrast":
        low, high = entry["contrast"]
        return layers.RandomContrast([1.0 - low, high - 1.0], value_range=entry["value_range"],
                                     name=name)
    if kind == "random_brightness":
        return layers.RandomBrightness(entry["delta"], value_range=entry["value_range"],
                                       name=name)
    cls = entry["class"]
    if cls == "GaussianNoise":
        return layers.GaussianNoise(entry["stddev"], name=name)
    if cls in ("Dropout", "AlphaDropout"):
        shape = entry.get("noise_shape")
        return getattr(layers, cls)(entry["rate"], noise_shape=tuple(shape) if shape else None,
                                    name=name)
    return getattr(layers, cls)(entry["rate"], name=name)      # SpatialDropout2D, Gaussian...


def _head_layer(keras, layer):
    cls, name, layers = layer["class"], layer["name"], keras.layers
    if is_training_only(layer):
        return _training_layer(keras, layer)
    if cls == "Dense":
        return layers.Dense(layer["units"], activation=layer["activation"],
                            use_bias=layer["use_bias"], name=name)
    if cls == "Activation":
        return layers.Activation(layer["activation"], name=name)
    if cls == "ReLU":
        return layers.ReLU(max_value=layer.get("max_value"),
                           negative_slope=layer["negative_slope"],
                           threshold=layer["threshold"], name=name)
    if cls == "LeakyReLU":
        return layers.LeakyReLU(negative_slope=layer["negative_slope"], name=name)
    if cls == "BatchNormalization":
        return layers.BatchNormalization(epsilon=layer.get("epsilon", 1e-3),
                                         momentum=layer.get("momentum", 0.99),
                                         center=layer.get("center", True),
                                         scale=layer.get("scale", True), name=name)
    return getattr(layers, cls)(name=name)     # pooling, Flatten, Softmax


def build_keras_own_model(spec, params, where, fill_xception):
    """The Keras 3 model of ``spec`` with ``params`` (MXNet names, numpy);
    ``fill_xception(xception_model)`` sets the base's weights."""
    keras = import_keras()
    channels = spec_channels(spec)
    size = tuple(spec["input_shape"]) + (channels,)
    if "declared_input_shape" in spec and not spec["declared_input_shape"] and \
            (preprocessed_size(spec) or not head_has_flatten(spec)):
        size = (None, None, channels)                # the Keras model took any size
    casts = [op["dtype"] for op in spec["preprocess"] if op["op"] == "cast"]
    inputs = keras.Input(size, dtype=casts[0] if casts else None)
    x = _preprocess(keras, inputs, spec, params, where)
    base_spec = spec["base"]
    if base_spec["name"]:
        base_size = tuple(preprocessed_size(spec) or size[:2]) + (channels,)
        base = keras.applications.Xception(include_top=False, weights=None,
                                           input_shape=base_size,
                                           pooling=base_spec["pooling"], name=base_spec["name"])
        x = base(x, training=False) if base_spec.get("inference_mode") else base(x)
    else:
        base = keras.applications.Xception(include_top=False, weights=None, input_tensor=x)
        x = base.output
    fill_xception(base)
    for layer in spec["head"]:
        x = _head_layer(keras, layer)(x)
    outputs = [x]
    if branches(spec):                 # a head that forks: one output per chain
        outputs = []
        for branch in branches(spec):
            y = x
            for layer in branch["layers"]:
                y = _head_layer(keras, layer)(y)
            outputs.append(y)
    model = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0])
    for name, arrays in head_weights(spec, params, where).items():
        model.get_layer(name).set_weights(arrays)
    return model
