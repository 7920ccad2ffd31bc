"""The model config Keras stores in a file (``config.json`` of a ``.keras``
archive, the ``model_config`` attribute of a full-model ``.h5``), read with
``json`` alone: nothing from the file is imported or executed.  Keras 2 and
Keras 3 write a layer's calls ("inbound nodes") in two formats; the helpers
here read both.
"""
import json
import os

from ..errors import ConversionError, make_sure

INPUT_CLASSES = ("InputLayer",)
MODEL_CLASSES = ("Functional", "Model", "Sequential")
XCEPTION_LAYER_PREFIXES = ("block", "conv2d", "convolution2d", "batch_normalization",
                           "batchnormalization", "add", "input", "avg_pool", "max_pool",
                           "global_average_pooling2d", "global_max_pooling2d", "predictions")


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



def layer_name(layer):
    return layer.get("name") or layer.get("config", {}).get("name")



def inbound(layer):
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



def called_in_inference_mode(layer):
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



def first_arg_is_tensor(layer):
    node = (layer.get("inbound_nodes") or [None])[0]
    if isinstance(node, dict):
        args = node.get("args", [])
        return bool(args) and isinstance(args[0], dict) and \
            args[0].get("class_name") == "__keras_tensor__"
    return True                 # Keras 2 TFOpLambda: the tensor is x, the constant y


def model_config(keras_file):
    """The file's architecture as a dict, or ``None`` for a weights-only file."""
    text = keras_file.attrs.get("model_config")
    return load_model_config(text, keras_file.path) if text else None


def is_plain_xception(config):
    """Whether the architecture is ``keras.applications.Xception`` itself."""
    layers = config.get("config", {}).get("layers") or []
    if config.get("class_name") not in ("Functional", "Model"):
        return False
    names = [layer_name(l) for l in layers]
    return bool(names) and all(str(n).startswith(XCEPTION_LAYER_PREFIXES) for n in names) and \
        not any(l.get("class_name") in MODEL_CLASSES for l in layers)


KERAS_CLASSES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data", "keras_layer_classes.txt")


def keras_layer_classes():
    """The layer class names Keras 2 and 3 define (package data)."""
    with open(KERAS_CLASSES_FILE) as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


def custom_layers(config):
    """``[(name, class, module)]`` of the layers, nested models' included, whose class is
    none of Keras' own (a Keras 3 archive records a module; other formats the class alone)."""
    known, found = keras_layer_classes(), []

    def walk(model):
        for layer in (model.get("config") or {}).get("layers") or []:
            if not isinstance(layer, dict):
                continue
            cls, module = layer.get("class_name"), layer.get("module")
            if cls not in known and not str(module or "").startswith("keras"):
                found.append((layer_name(layer), cls, module))
            walk(layer)
    walk(config)
    return found


KERAS_BATCHNORM = {"momentum": 0.99, "epsilon": 1e-3}      # Keras' BatchNormalization defaults


def leaf_layers(config):
    """Every layer entry of a model config that is not itself a model (nested models'
    layers in their place)."""
    for layer in (config.get("config") or {}).get("layers") or []:
        if not isinstance(layer, dict):
            continue
        if layer.get("class_name") in MODEL_CLASSES:
            yield from leaf_layers(layer)
        else:
            yield layer


def batchnorm_settings(config):
    """``{layer: {"momentum", "epsilon"}}`` of the file's BatchNormalization layers (nested
    models' too) whose momentum or epsilon is not Keras' default."""
    found = {}
    for layer in leaf_layers(config):
        if layer.get("class_name") == "BatchNormalization":
            cfg = layer.get("config") or {}
            setting = {key: float(cfg.get(key, default))
                       for key, default in KERAS_BATCHNORM.items()}
            if setting != KERAS_BATCHNORM:
                found[layer_name(layer)] = setting
    return found


REGULARIZER_KEYS = ("kernel_regularizer", "bias_regularizer", "depthwise_regularizer",
                    "pointwise_regularizer", "activity_regularizer")


def layer_regularizers(config):
    """``{layer: {"kernel_regularizer": {"class_name", "config"}, ...}}`` of the file's layers
    (nested models' too) that have regularizers, as Keras saved them."""
    found = {}
    for layer in leaf_layers(config):
        cfg = layer.get("config") or {}
        given = {key: _plain_object(cfg[key]) for key in REGULARIZER_KEYS if cfg.get(key)}
        if given:
            found[layer_name(layer)] = given
    return found


def _plain_object(entry):
    """A Keras object's entry as ``{"class_name", "config"}`` (a name as its class)."""
    if isinstance(entry, str):
        return {"class_name": entry, "config": {}}
    return {"class_name": entry.get("class_name"), "config": entry.get("config") or {}}


def frozen_layers(config):
    """Names of the layers (nested models' too) saved non-trainable: their own ``trainable``
    flag is false, or that of a model holding them (``base.trainable = False``)."""
    found = set()

    def walk(model, frozen):
        for layer in (model.get("config") or {}).get("layers") or []:
            if not isinstance(layer, dict):
                continue
            off = frozen or (layer.get("config") or {}).get("trainable") is False
            if layer.get("class_name") in MODEL_CLASSES:
                walk(layer, off)
            elif off:
                found.add(layer_name(layer))
    walk(config, (config.get("config") or {}).get("trainable") is False)
    return found
