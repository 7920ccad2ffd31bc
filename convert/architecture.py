"""A user's transfer-learning model, read from the architecture JSON Keras
stores in the file (``config.json`` of a ``.keras`` archive, the
``model_config`` attribute of a full-model ``.h5``), with ``json`` alone:
nothing from the file is imported or executed.

What is understood is a chain ``input -> preprocessing -> Xception base ->
head``, in the three ways users write it:

- nested: the base is a Functional model inside the model (the keras.io
  transfer-learning guide), or inside a ``Sequential``;
- flattened: ``Model(base.input, head(base.output))``, the Xception layers at
  the top level next to the head;
- ``Sequential([Xception(include_top=False, ...), ...])``.

The result is a ``Transfer``: the input size, the preprocessing operations,
the base (nested model name or flattened, its pooling) and the head layers,
each as plain JSON-ready data (recorded in ``PREFIX-meta.json``, from which
``xception_mx.model.transfer.TransferNet`` rebuilds the network).
"""
import collections
import json

from xception_mx.model.transfer import ACTIVATIONS, IDENTITY_LAYERS, check_spec

from .errors import ConversionError, make_sure

Transfer = collections.namedtuple("Transfer", "spec base_name base_layers before_base")
Transfer.__doc__ = """``spec``: the network description (see
``xception_mx.model.transfer``); ``base_name``: the nested base model's name (None
when flattened); ``base_layers``: names of the top-level layers that belong
to a flattened base; ``before_base``: the layers on the way from the input to
the base, in order (preprocessing and augmentation)."""

BASE_FIRST, BASE_FEATURES = "block1_conv1", "block14_sepconv2_act"
BASE_POOLS = {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}
INPUT_CLASSES = ("InputLayer",)
MODEL_CLASSES = ("Functional", "Model", "Sequential")
# Scalar arithmetic on the symbolic input (``preprocess_input``): Keras 2
# records ``TFOpLambda`` layers named after the TF function, Keras 3 operation
# layers named after the op class.
SCALAR_OPS = {
    "math.truediv": "divide", "math.divide": "divide", "__operators__.truediv": "divide",
    "math.subtract": "subtract", "__operators__.sub": "subtract",
    "math.multiply": "multiply", "__operators__.mul": "multiply",
    "math.add": "add", "__operators__.add": "add",
    "TrueDivide": "divide", "Divide": "divide", "Subtract": "subtract",
    "Multiply": "multiply", "Add": "add",
}
COMMUTATIVE = ("add", "multiply")
SUPPORTED_TEXT = ("supported: InputLayer, Rescaling, Normalization, preprocess_input "
                  "arithmetic, identity augmentation layers; the Xception base; "
                  "GlobalAverage/MaxPooling2D, Flatten, Dense, Activation, ReLU, LeakyReLU, "
                  "Softmax, BatchNormalization, Dropout-like layers")


def load_model_config(text, path):
    """The model config dict from its JSON text."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConversionError("%s: the model architecture is not readable JSON (%s)"
                              % (path, exc))
    make_sure(isinstance(config, dict) and "class_name" in config and "config" in config,
              "%s: the model architecture has no class_name/config", path)
    return config


def _layer_name(layer):
    return layer.get("name") or layer.get("config", {}).get("name")


def _inbound(layer):
    """``[(source layer name, constant arguments)]`` of a layer's first call,
    for both the Keras 2 and the Keras 3 node formats."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return [], []
    node = nodes[0]
    if isinstance(node, dict):                              # Keras 3
        tensors, constants = [], []
        for arg in node.get("args", []):
            for item in (arg if isinstance(arg, list) else [arg]):
                if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
                    tensors.append(item["config"]["keras_history"][0])
                else:
                    constants.append(item)
        constants += [v for k, v in node.get("kwargs", {}).items()
                      if k in ("y", "x2") and not isinstance(v, dict)]
        return tensors, constants
    tensors, constants = [], []                             # Keras 2
    if node and isinstance(node[0], str):                   # TFOpLambda: one flat entry
        node = [node]
    for entry in node:
        tensors.append(entry[0])
        kwargs = entry[3] if len(entry) > 3 and isinstance(entry[3], dict) else {}
        constants += [v for k, v in kwargs.items() if k == "y"]
    return tensors, constants


def _called_in_inference_mode(layer):
    """Whether the layer's first call passed ``training=False`` (the keras.io
    guide's ``base(x, training=False)``), in either node format."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return False
    node = nodes[0]
    if isinstance(node, dict):                              # Keras 3
        return node.get("kwargs", {}).get("training") is False
    entry = node if node and isinstance(node[0], str) else node[0]    # Keras 2
    kwargs = entry[3] if len(entry) > 3 and isinstance(entry[3], dict) else {}
    return kwargs.get("training") is False


def _refuse(path, layer, why):
    raise ConversionError("%s: layer '%s' (%s): %s; %s" % (
        path, _layer_name(layer), layer.get("class_name"), why, SUPPORTED_TEXT))


def _is_xception(config):
    names = {_layer_name(l) for l in config.get("config", {}).get("layers", [])}
    return BASE_FIRST in names and "block14_sepconv2" in names


def _input_size(layer):
    cfg = layer.get("config", {})
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape and len(shape) == 4:
        return shape[1:3]
    return None


def _activation(path, layer, name):
    make_sure(name in ACTIVATIONS, "%s: layer '%s' (%s): activation '%s' is not supported "
              "(supported: %s)", path, _layer_name(layer), layer.get("class_name"), name,
              ", ".join(sorted(ACTIVATIONS)))
    return name


def _head_layer(path, layer):
    """The head spec entry of one layer (``None`` for identity layers)."""
    cls, cfg, name = layer.get("class_name"), layer.get("config", {}), _layer_name(layer)
    if cls in IDENTITY_LAYERS:
        return None
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        make_sure(not cfg.get("keepdims"), "%s: layer '%s' (%s): keepdims=True is not "
                  "supported", path, name, cls)
        return {"class": cls, "name": name}
    if cls == "Flatten":
        return {"class": cls, "name": name}
    if cls == "Dense":
        return {"class": cls, "name": name, "units": int(cfg["units"]),
                "use_bias": bool(cfg.get("use_bias", True)),
                "activation": _activation(path, layer, cfg.get("activation") or "linear")}
    if cls == "Activation":
        return {"class": cls, "name": name,
                "activation": _activation(path, layer, cfg.get("activation"))}
    if cls == "ReLU":
        return {"class": cls, "name": name, "max_value": cfg.get("max_value"),
                "negative_slope": float(cfg.get("negative_slope") or 0.0),
                "threshold": float(cfg.get("threshold") or 0.0)}
    if cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        return {"class": cls, "name": name, "negative_slope": float(slope)}
    if cls == "Softmax":
        axis = cfg.get("axis", -1)
        make_sure(axis in (-1, [-1]), "%s: layer '%s' (Softmax): only axis -1 is supported, "
                  "got %s", path, name, axis)
        return {"class": cls, "name": name}
    if cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        make_sure(axis in (-1, [-1], 3, [3], 1, [1]), "%s: layer '%s' (BatchNormalization): "
                  "only the channel axis is supported, got %s", path, name, axis)
        return {"class": cls, "name": name, "epsilon": float(cfg.get("epsilon", 1e-3)),
                "momentum": float(cfg.get("momentum", 0.99)),
                "center": bool(cfg.get("center", True)), "scale": bool(cfg.get("scale", True)),
                "axis": -1}                     # the channel axis, however the file says it
    _refuse(path, layer, "not a layer a head may hold")


def _preprocess_ops(path, layer):
    """The preprocessing operations of one layer before the base."""
    cls, cfg, name = layer.get("class_name"), layer.get("config", {}), _layer_name(layer)
    if cls in IDENTITY_LAYERS:
        return []
    if cls == "Sequential":
        ops = []
        for inner in cfg.get("layers", []):
            if inner.get("class_name") in INPUT_CLASSES:
                continue
            make_sure(inner.get("class_name") in IDENTITY_LAYERS or
                      inner.get("class_name") in ("Rescaling", "Normalization"),
                      "%s: layer '%s' (%s) inside '%s': not a preprocessing layer; %s", path,
                      _layer_name(inner), inner.get("class_name"), name, SUPPORTED_TEXT)
            ops += _preprocess_ops(path, inner)
        return ops
    if cls == "Rescaling":
        scale, offset = cfg.get("scale", 1.0), cfg.get("offset", 0.0)
        make_sure(isinstance(scale, (int, float)) and isinstance(offset, (int, float)),
                  "%s: layer '%s' (Rescaling): only scalar scale and offset are supported",
                  path, name)
        return [{"op": "multiply", "value": float(scale)}, {"op": "add", "value": float(offset)}]
    if cls == "Normalization":
        make_sure(not cfg.get("invert"), "%s: layer '%s' (Normalization): invert=True is not "
                  "supported", path, name)
        axis = cfg.get("axis", -1)
        make_sure(axis in (-1, [-1], 3, [3]), "%s: layer '%s' (Normalization): only the "
                  "channel axis is supported, got %s", path, name, axis)
        return [{"op": "normalize", "name": name, "mean": cfg.get("mean"),
                 "variance": cfg.get("variance")}]
    function = cfg.get("function") if cls == "TFOpLambda" else cls
    if function in SCALAR_OPS:
        op = SCALAR_OPS[function]
        tensors, constants = _inbound(layer)
        first_is_tensor = _first_arg_is_tensor(layer)
        make_sure(len(tensors) == 1 and len(constants) == 1 and
                  isinstance(constants[0], (int, float)),
                  "%s: layer '%s' (%s): only arithmetic of the input with one number is "
                  "supported", path, name, cls)
        make_sure(first_is_tensor or op in COMMUTATIVE, "%s: layer '%s' (%s): a number %s the "
                  "input is not supported (only input %s number)", path, name, cls,
                  {"subtract": "minus", "divide": "divided by"}.get(op, op),
                  {"subtract": "-", "divide": "/"}.get(op, op))
        return [{"op": op, "value": float(constants[0])}]
    _refuse(path, layer, "not a layer that may come before the Xception base")


def _first_arg_is_tensor(layer):
    node = (layer.get("inbound_nodes") or [None])[0]
    if isinstance(node, dict):
        args = node.get("args", [])
        return bool(args) and isinstance(args[0], dict) and \
            args[0].get("class_name") == "__keras_tensor__"
    return True                 # Keras 2 TFOpLambda: the tensor is x, the constant y


def _base_pooling(path, base_config):
    """``None``/``'avg'``/``'max'`` of a nested Xception; refuses one with its top."""
    layers = base_config["config"]["layers"]
    make_sure("predictions" not in {_layer_name(l) for l in layers}, "%s: layer '%s' (%s): "
              "the nested Xception has its own classifier ('predictions'); build the base "
              "with include_top=False", path, _layer_name(base_config),
              base_config.get("class_name"))
    outputs = base_config["config"].get("output_layers") or []
    last = outputs[0] if outputs and isinstance(outputs[0], str) else \
        (outputs[-1][0] if outputs else BASE_FEATURES)
    cls = {_layer_name(l): l.get("class_name") for l in layers}.get(last)
    return BASE_POOLS.get(cls)


def _chain(path, layers, output_name):
    """Walk back from ``output_name`` to the input through single inbounds;
    returns the layers from the input to the output."""
    by_name = {_layer_name(l): l for l in layers}
    chain, name = [], output_name
    while True:
        layer = by_name.get(name)
        make_sure(layer is not None, "%s: the architecture names a layer '%s' it does not "
                  "define", path, name)
        chain.append(layer)
        if layer.get("class_name") in INPUT_CLASSES:
            break
        if layer.get("class_name") in MODEL_CLASSES and _is_xception(layer) or \
                _layer_name(layer) == BASE_FEATURES:
            chain.extend(_preprocessing_chain(path, by_name, layer))
            break
        tensors, _ = _inbound(layer)
        make_sure(len(tensors) == 1, "%s: layer '%s' (%s) takes %d inputs: the head must be a "
                  "chain (no branches or merges); %s", path, name, layer.get("class_name"),
                  len(tensors), SUPPORTED_TEXT)
        name = tensors[0]
    return list(reversed(chain))


def _preprocessing_chain(path, by_name, base_end):
    """From the base's first layer back to the model input."""
    start = base_end
    if _layer_name(base_end) == BASE_FEATURES:
        start = by_name.get(BASE_FIRST)
        make_sure(start is not None, "%s: no layer %s before %s", path, BASE_FIRST,
                  BASE_FEATURES)
    chain = []
    tensors, _ = _inbound(start)
    while tensors:
        make_sure(len(tensors) == 1, "%s: layer '%s' takes %d inputs before the base", path,
                  _layer_name(start), len(tensors))
        layer = by_name[tensors[0]]
        chain.append(layer)
        tensors, _ = _inbound(layer)
    return chain


def read_transfer(path, config, declared_size=None):
    """Turn a model config into a ``Transfer``.

    Raises:
        ConversionError: the model is not a chain around one Xception base, or
            holds a layer that is not supported (named, with its class).
    """
    cls, cfg = config.get("class_name"), config.get("config", {})
    make_sure(cls in MODEL_CLASSES, "%s: the file's model is a %s, expected a Functional or "
              "Sequential model", path, cls)
    layers = cfg.get("layers") or []
    if cls == "Sequential":
        chain = [l for l in layers if l.get("class_name") not in INPUT_CLASSES]
        inputs = [l for l in layers if l.get("class_name") in INPUT_CLASSES]
        size = _input_size(inputs[0]) if inputs else None
        size = size or (cfg.get("build_input_shape") or [None] * 4)[1:3]
        if chain and not size[0]:
            size = _input_size(chain[0])
    else:
        outputs = cfg.get("output_layers") or []
        outputs = [outputs] if outputs and not isinstance(outputs[0], list) else outputs
        make_sure(len(outputs) == 1, "%s: the model has %d outputs; only one is supported",
                  path, len(outputs))
        inputs_cfg = cfg.get("input_layers") or []
        inputs_cfg = [inputs_cfg] if inputs_cfg and not isinstance(inputs_cfg[0], list) \
            else inputs_cfg
        make_sure(len(inputs_cfg) == 1, "%s: the model has %d inputs; only one is supported",
                  path, len(inputs_cfg))
        chain = _chain(path, layers, outputs[0][0])
        size = _input_size(chain[0]) if chain[0].get("class_name") in INPUT_CLASSES else None
        chain = [l for l in chain if l.get("class_name") not in INPUT_CLASSES]

    bases = [i for i, l in enumerate(chain)
             if (l.get("class_name") in MODEL_CLASSES and _is_xception(l)) or
             _layer_name(l) == BASE_FEATURES]
    make_sure(bases, "%s: no Xception base in the model (no nested model or layers named "
              "%s ... %s)", path, BASE_FIRST, BASE_FEATURES)
    make_sure(len(bases) == 1, "%s: layer '%s' (%s): a second Xception base; one is supported",
              path, _layer_name(chain[bases[-1]]), chain[bases[-1]].get("class_name"))
    at = bases[0]
    base = chain[at]
    preprocessing = []
    for layer in chain[:at]:
        preprocessing += _preprocess_ops(path, layer)
    base_layers = ()
    inference_base = False
    if _layer_name(base) == BASE_FEATURES:
        base_name, pooling = None, None
        base_layers = _flattened_base_layers(path, layers, chain[:at])
    else:
        base_name, pooling = _layer_name(base), _base_pooling(path, base)
        inference_base = _called_in_inference_mode(base)
        if not (size and size[0]):
            inner = [l for l in base["config"]["layers"]
                     if l.get("class_name") in INPUT_CLASSES]
            size = _input_size(inner[0]) if inner else None
    head = [h for h in (_head_layer(path, l) for l in chain[at + 1:]) if h is not None]
    if cls != "Sequential":
        used = {_layer_name(l) for l in chain} | set(base_layers)
        extra = [l for l in layers if _layer_name(l) not in used and
                 l.get("class_name") not in INPUT_CLASSES]
        make_sure(not extra, "%s: layer '%s' (%s) is not on the path from the input through "
                  "the base to the output (branches and extra outputs are not supported)",
                  path, extra and _layer_name(extra[0]), extra and extra[0].get("class_name"))
    spec = {"input_shape": list(declared_size or size or (299, 299)),
            "declared_input_shape": list(size) if size and size[0] else None,
            "preprocess": preprocessing,
            "base": {"name": base_name, "pooling": pooling, "inference_mode": inference_base},
            "head": head}
    check_spec(spec)
    return Transfer(spec, base_name, tuple(base_layers),
                    tuple(_layer_name(l) for l in chain[:at]))


def _flattened_base_layers(path, layers, before_base):
    """Names of the top-level layers of a flattened base: everything that is
    neither the input, nor preprocessing, nor after the base."""
    names = [_layer_name(l) for l in layers]
    end = names.index(BASE_FEATURES)
    skip = {_layer_name(l) for l in before_base}
    return [_layer_name(l) for l in layers[:end + 1]
            if l.get("class_name") not in INPUT_CLASSES and _layer_name(l) not in skip]
