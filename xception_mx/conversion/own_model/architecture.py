"""A user's own model, read from the architecture JSON Keras
stores in the file (``keras_config``), one layer at a time (``layers``).

What is understood is a chain ``input -> preprocessing -> Xception base ->
head`` (whose end may fork once into several outputs, each a chain of its own), in the
three ways users write it:

- nested: the base is a Functional model inside the model (the keras.io
  transfer-learning guide), or inside a ``Sequential``;
- flattened: ``Model(base.input, head(base.output))``, the Xception layers at
  the top level next to the head;
- ``Sequential([Xception(include_top=False, ...), ...])``.

The result is an ``OwnModel``: the input size (for a model that takes any
size: 299x299, or the size its ``Resizing`` gives), the preprocessing operations,
the base (nested model name or flattened, its pooling), the head layers and, for
several outputs, each output's layers after the fork (``branches``), each as plain
JSON-ready data (recorded in ``PREFIX-meta.json``, from which
``xception_mx.model.own_model.OwnModelNet`` rebuilds the network).
"""
import collections

from xception_mx.model.own_model import check_spec
from xception_mx.model.training_only import inference_layers
from xception_mx.model.own_model_inputs import preprocessed_size
from xception_mx.model.xception import RGB

from ..errors import make_sure
from .keras_config import (INPUT_CLASSES, MODEL_CLASSES, called_in_inference_mode, inbound,
                           layer_name)
from .layers import SUPPORTED_TEXT, head_entry, input_ops, preprocess_ops

OwnModel = collections.namedtuple("OwnModel", "spec base_name base_layers before_base")
OwnModel.__doc__ = """``spec``: the network description (see
``xception_mx.model.own_model``); ``base_name``: the nested base model's name (None
when flattened); ``base_layers``: names of the top-level layers that belong
to a flattened base; ``before_base``: the layers on the way from the input to
the base, in order (preprocessing and augmentation)."""

BASE_FIRST, BASE_FEATURES = "block1_conv1", "block14_sepconv2_act"
BASE_POOLS = {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}


def _is_xception(config):
    names = {layer_name(l) for l in config.get("config", {}).get("layers", [])}
    return BASE_FIRST in names and "block14_sepconv2" in names


def _batch_shape(layer):
    """The (N, H, W, C) a Keras input layer declares, or ``None``."""
    cfg = (layer or {}).get("config", {})
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    return shape if shape and len(shape) == 4 else None


def _input_size(layer):
    shape = _batch_shape(layer)
    return shape[1:3] if shape else None


def _input_channels(layer):
    """The channel count a Keras input layer declares (``None``: not declared)."""
    shape = _batch_shape(layer)
    return shape[3] if shape else None


def _base_pooling(path, base_config):
    """``None``/``'avg'``/``'max'`` of a nested Xception; refuses one with its top."""
    layers = base_config["config"]["layers"]
    make_sure("predictions" not in {layer_name(l) for l in layers}, "%s: layer '%s' (%s): "
              "the nested Xception has its own classifier ('predictions'); build the base "
              "with include_top=False", path, layer_name(base_config),
              base_config.get("class_name"))
    outputs = base_config["config"].get("output_layers") or []
    last = outputs[0] if outputs and isinstance(outputs[0], str) else \
        (outputs[-1][0] if outputs else BASE_FEATURES)
    cls = {layer_name(l): l.get("class_name") for l in layers}.get(last)
    return BASE_POOLS.get(cls)


def _chain(path, layers, output_name):
    """Walk back from ``output_name`` to the input through single inbounds;
    returns the layers from the input to the output."""
    by_name = {layer_name(l): l for l in layers}
    chain, name = [], output_name
    while True:
        layer = by_name.get(name)
        make_sure(layer is not None, "%s: the architecture names a layer '%s' it does not "
                  "define", path, name)
        chain.append(layer)
        if layer.get("class_name") in INPUT_CLASSES:
            break
        if layer.get("class_name") in MODEL_CLASSES and _is_xception(layer) or \
                layer_name(layer) == BASE_FEATURES:
            chain.extend(_preprocessing_chain(path, by_name, layer))
            break
        tensors, _ = inbound(layer)
        make_sure(len(tensors) == 1, "%s: layer '%s' (%s) takes %d inputs: the head must be a "
                  "chain (no branches or merges); %s", path, name, layer.get("class_name"),
                  len(tensors), SUPPORTED_TEXT)
        name = tensors[0]
    return list(reversed(chain))


def _fork(path, chains):
    """``(trunk, forks)``: what the chains of several outputs share, and each output's own
    chain after that (``[]`` for one output).  The outputs must fork once, after the base."""
    if len(chains) == 1:
        return chains[0], []
    names = [[layer_name(l) for l in c] for c in chains]
    shared = 0
    while all(len(n) > shared and n[shared] == names[0][shared] for n in names):
        shared += 1
    forks = [c[shared:] for c in chains]
    for fork, chain in zip(forks, chains):
        make_sure(fork, "%s: output '%s' is where the other outputs fork; each output must "
                  "have layers of its own after the fork", path, layer_name(chain[-1]))
    seen = {}
    for fork in forks:
        for layer in fork:
            name = layer_name(layer)
            make_sure(not (layer.get("class_name") in MODEL_CLASSES and _is_xception(layer))
                      and name != BASE_FEATURES, "%s: the outputs fork before the Xception "
                      "base; one base shared by every output is supported", path)
            make_sure(name not in seen, "%s: layer '%s' (%s) is on the way to outputs '%s' "
                      "and '%s': the outputs must fork at one layer into separate chains",
                      path, name, layer.get("class_name"), seen.get(name),
                      layer_name(fork[-1]))
            seen[name] = layer_name(fork[-1])
    return chains[0][:shared], forks


def _entries(path, chain):
    """The head spec entries of a chain of layers (identity layers left out)."""
    return [h for h in (head_entry(path, l) for l in chain) if h is not None]


def _preprocessing_chain(path, by_name, base_end):
    """From the base's first layer back to the model input."""
    start = base_end
    if layer_name(base_end) == BASE_FEATURES:
        start = by_name.get(BASE_FIRST)
        make_sure(start is not None, "%s: no layer %s before %s", path, BASE_FIRST,
                  BASE_FEATURES)
    chain = []
    tensors, _ = inbound(start)
    while tensors:
        make_sure(len(tensors) == 1, "%s: layer '%s' takes %d inputs before the base", path,
                  layer_name(start), len(tensors))
        layer = by_name[tensors[0]]
        chain.append(layer)
        tensors, _ = inbound(layer)
    return chain


def read_own_model(path, config, declared_size=None):
    """Turn a model config into an ``OwnModel``.

    Raises:
        ConversionError: the model is not a chain around one Xception base, or
            holds a layer that is not supported (named, with its class).
    """
    cls, cfg = config.get("class_name"), config.get("config", {})
    make_sure(cls in MODEL_CLASSES, "%s: the file's model is a %s, expected a Functional or "
              "Sequential model", path, cls)
    layers = cfg.get("layers") or []
    chain, forks, model_input, size = _model_chain(path, cls, cfg, layers)
    bases = [i for i, l in enumerate(chain)
             if (l.get("class_name") in MODEL_CLASSES and _is_xception(l)) or
             layer_name(l) == BASE_FEATURES]
    make_sure(bases, "%s: no Xception base in the model (no nested model or layers named "
              "%s ... %s)", path, BASE_FIRST, BASE_FEATURES)
    make_sure(len(bases) == 1, "%s: layer '%s' (%s): a second Xception base; one is supported",
              path, layer_name(chain[bases[-1]]), chain[bases[-1]].get("class_name"))
    at = bases[0]
    base = chain[at]
    preprocessing = input_ops(path, model_input) if model_input else []
    for layer in chain[:at]:
        preprocessing += preprocess_ops(path, layer)
    sized = preprocessed_size({"preprocess": preprocessing})     # by Resizing/CenterCrop
    base_layers = ()
    inference_base = False
    if layer_name(base) == BASE_FEATURES:
        base_name, pooling = None, None
        base_layers = _flattened_base_layers(path, layers, chain[:at])
    else:
        base_name, pooling = layer_name(base), _base_pooling(path, base)
        inference_base = called_in_inference_mode(base)
        if not (size and size[0]) and not sized:
            inner = [l for l in base["config"]["layers"]
                     if l.get("class_name") in INPUT_CLASSES]
            size = _input_size(inner[0]) if inner else None
    channels = _input_channels(model_input) or (
        _input_channels(next((l for l in base["config"]["layers"]
                              if l.get("class_name") in INPUT_CLASSES), None))
        if base_name else None) or RGB
    head = _entries(path, chain[at + 1:])
    branches = [{"name": layer_name(fork[-1]), "layers": _entries(path, fork)}
                for fork in forks]
    for branch in branches:
        make_sure(inference_layers(branch["layers"]), "%s: output '%s' computes nothing after "
                  "the outputs fork (only layers that are the identity at inference)", path,
                  branch["name"])
    if cls != "Sequential":
        _check_all_used(path, layers, chain, forks, base_layers)
    size = list(size) if size and all(size) else None      # (None, None): any size
    spec = {"input_shape": list(declared_size or size or sized or (299, 299)),
            "declared_input_shape": size,
            "channels": channels,
            "preprocess": preprocessing,
            "base": {"name": base_name, "pooling": pooling, "inference_mode": inference_base},
            "head": head}
    if branches:
        spec["branches"] = branches
    check_spec(spec)
    return OwnModel(spec, base_name, tuple(base_layers),
                    tuple(layer_name(l) for l in chain[:at]))


def _model_chain(path, cls, cfg, layers):
    """``(chain, forks, input layer, declared size)``: the layers from the input to the
    outputs (a ``Functional`` model's forks after the point where its outputs part), without
    the input layers."""
    if cls == "Sequential":
        chain = [l for l in layers if l.get("class_name") not in INPUT_CLASSES]
        inputs = [l for l in layers if l.get("class_name") in INPUT_CLASSES]
        model_input = inputs[0] if inputs else None
        size = _input_size(model_input) if model_input else None
        size = size or (cfg.get("build_input_shape") or [None] * 4)[1:3]
        if chain and not size[0]:
            size = _input_size(chain[0])
        return chain, [], model_input, size
    outputs = cfg.get("output_layers") or []
    outputs = [outputs] if outputs and not isinstance(outputs[0], list) else outputs
    make_sure(outputs, "%s: the model declares no outputs", path)
    inputs_cfg = cfg.get("input_layers") or []
    inputs_cfg = [inputs_cfg] if inputs_cfg and not isinstance(inputs_cfg[0], list) \
        else inputs_cfg
    make_sure(len(inputs_cfg) == 1, "%s: the model has %d inputs; only one is supported",
              path, len(inputs_cfg))
    chain, forks = _fork(path, [_chain(path, layers, o[0]) for o in outputs])
    model_input = chain[0] if chain[0].get("class_name") in INPUT_CLASSES else None
    size = _input_size(model_input) if model_input else None
    chain = [l for l in chain if l.get("class_name") not in INPUT_CLASSES]
    return chain, forks, model_input, size


def _check_all_used(path, layers, chain, forks, base_layers):
    """Every layer of a ``Functional`` model is on the path from its input to an output."""
    used = {layer_name(l) for l in chain + sum(forks, [])} | set(base_layers)
    extra = [l for l in layers if layer_name(l) not in used and
             l.get("class_name") not in INPUT_CLASSES]
    make_sure(not extra, "%s: layer '%s' (%s) is not on the path from the input through "
              "the base to the outputs (branches that end in no output are not supported)",
              path, extra and layer_name(extra[0]), extra and extra[0].get("class_name"))


def _flattened_base_layers(path, layers, before_base):
    """Names of the top-level layers of a flattened base: everything that is
    neither the input, nor preprocessing, nor after the base."""
    names = [layer_name(l) for l in layers]
    end = names.index(BASE_FEATURES)
    skip = {layer_name(l) for l in before_base}
    return [layer_name(l) for l in layers[:end + 1]
            if l.get("class_name") not in INPUT_CLASSES and layer_name(l) not in skip]
