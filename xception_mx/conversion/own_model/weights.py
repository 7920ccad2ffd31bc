"""Convert a user's own model (preprocessing -> Xception base ->
head, see ``architecture``) into the equivalent MXNet network.

The base's weights are found as for plain Xception (``matching``: named layers
by name, the auto-named residual layers by shape), among the layers of the
nested model or, when flattened, among the top-level layers the architecture
assigns to the base.  Head and preprocessing weights are found by their layer
names.  Every tensor is used exactly once (a ``Normalization``'s sample
``count`` is not needed at inference and is left out), and every MXNet
parameter is filled exactly once.
"""
import collections
import re

import numpy as np

from xception_mx.model.augmentation import with_keras_draws
from xception_mx.model.own_model import OwnModelNet, head_has_flatten, head_layers
from xception_mx.model.own_model_inputs import base_input_size, check_model_input, spec_channels

from ..errors import ConversionError, make_sure
from ..matching import match_layers
from ..name_table import BN, BY_NAME, DENSE, NORM, ROLES, TARGET, Row, build_name_table
from .architecture import read_own_model

HEAD_KINDS = {"Dense": DENSE, "BatchNormalization": BN}
UNUSED_ROLES = {NORM: ("count",)}


def _snake_case(class_name):
    """Keras 3's ``naming.to_snake_case`` of a class name (``Dense`` -> ``dense``)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def keras3_group_names(layer_configs):
    """``{group name: layer name}``: the groups under which Keras 3 saves the
    layers of one model: the snake-cased class, ``_1``, ``_2``... in the
    order of the model's layers (operations such as ``TrueDivide`` hold no
    state and get none)."""
    counts, groups = collections.Counter(), {}
    for layer in layer_configs:
        if str(layer.get("module", "")).startswith("keras.src.ops"):
            continue
        stem = _snake_case(layer.get("class_name", ""))
        groups[stem if not counts[stem] else "%s_%d" % (stem, counts[stem])] = \
            layer.get("config", {}).get("name") or layer.get("name")
        counts[stem] += 1
    return groups


def name_unnamed_layers(keras_file, config):
    """A Keras 3 file whose weight groups record no layer names (earlier Keras 3
    releases): top-level layers and nested models named from the config by
    ``keras3_group_names``; a nested base's own layers are named later, by
    class order, as for plain Xception."""
    if all(fl.name is not None for fl in keras_file.layers):
        return keras_file
    groups = keras3_group_names(config.get("config", {}).get("layers") or [])
    named = []
    for fl in keras_file.layers:
        if fl.parent is None and fl.name is None:
            fl = fl._replace(name=groups.get(fl.path.rsplit("/", 1)[-1]))
        elif fl.parent is not None and fl.name is None:
            fl = fl._replace(parent=groups.get(fl.parent, fl.parent))
        named.append(fl)
    return keras_file._replace(layers=named)


def _base_layers(keras_file, own):
    if own.base_name is not None:
        chosen = [fl for fl in keras_file.layers if fl.parent == own.base_name]
    else:
        names = set(own.base_layers)
        chosen = [fl for fl in keras_file.layers if fl.parent is None and fl.name in names]
    make_sure(chosen, "%s: no weights for the Xception base%s in the file", keras_file.path,
              " '%s'" % own.base_name if own.base_name else "")
    return keras_file._replace(layers=chosen)


def _other_layers(keras_file, own, base):
    used = {id(fl) for fl in base.layers}
    return {fl.name: fl for fl in keras_file.layers
            if id(fl) not in used and fl.parent is None}


def _shape(array):
    return tuple(array.shape)


def head_rows(path, spec, others):
    """Name-table rows of the preprocessing and head layers, with their arrays."""
    rows, arrays, file_names = [], {}, {}
    weighted = [dict(l, kind=HEAD_KINDS[l["class"]]) for l in head_layers(spec)
                if l["class"] in HEAD_KINDS]
    weighted += [{"name": op["name"], "kind": NORM, "values": op}
                 for op in spec["preprocess"] if op["op"] == "normalize"]
    for layer in weighted:
        name, kind = layer["name"], layer["kind"]
        fl = others.pop(name, None)
        if kind == NORM and fl is None:
            make_sure(layer["values"].get("mean") is not None, "%s: layer '%s' "
                      "(Normalization) has neither weights nor a mean/variance in its config",
                      path, name)
            weights = {"mean": np.asarray(layer["values"]["mean"], np.float32),
                       "variance": np.asarray(layer["values"]["variance"], np.float32)}
        else:
            make_sure(fl is not None, "%s: layer '%s' has no weights in the file", path, name)
            weights = fl.weights
        roles = [r for r in ROLES[kind] if r in weights or
                 not (kind == DENSE and r == "bias" and not layer.get("use_bias", True))]
        if kind == BN:
            roles = [r for r in roles if r in weights or
                     (r == "gamma" and layer.get("scale")) or (r == "beta" and layer.get("center"))]
        extra = sorted(set(weights) - set(roles) - set(UNUSED_ROLES.get(kind, ())))
        make_sure(not extra, "%s: layer '%s' has weights a %s layer does not have: %s", path,
                  name, kind, ", ".join(extra))
        for role in roles:
            if role in UNUSED_ROLES.get(kind, ()):
                continue
            make_sure(role in weights, "%s: layer '%s' lacks its %s weight", path, name, role)
            suffix, transform, _ = TARGET[(kind, role)]
            rows.append(Row(name, role, BY_NAME, "%s_%s" % (name, suffix), kind, transform,
                            _shape(weights[role])))
            arrays[(name, role)] = np.asarray(weights[role], np.float32)
        file_names[name] = fl.name if fl is not None else "(config)"
    return rows, arrays, file_names


def fill_missing_bn(net, arg_params):
    """BatchNorm without center/scale: beta 0 / gamma 1, as Keras computes."""
    for name, param in net.collect_params().items():
        if name not in arg_params and name.endswith(("_gamma", "_beta")):
            fill = np.ones if name.endswith("_gamma") else np.zeros
            arg_params[name] = fill(param.shape, np.float32)


def convert_own_model(keras_file, config, input_shape=None, strict=False):
    """A ``(net, rows, match, arrays)`` for the own model of ``keras_file``."""
    path = keras_file.path
    own = read_own_model(path, config)
    spec = with_keras_draws(own.spec, keras_file.attrs.get("keras_version"))
    if input_shape is not None:
        try:
            size = check_model_input(spec, tuple(input_shape))
        except ValueError as exc:
            raise ConversionError("--input-shape: %s" % exc)
        make_sure(not head_has_flatten(spec) or base_input_size(spec, size) ==
                  base_input_size(spec, spec["input_shape"]),
                  "%s: --input-shape %d %d: the model's head flattens the feature map, so "
                  "its Dense layer fits only its own input size %dx%d", path, size[0], size[1],
                  *spec["input_shape"])
        spec = dict(spec, input_shape=list(size))
    keras_file = name_unnamed_layers(keras_file, config)
    base = _base_layers(keras_file, own)
    match = match_layers(base)
    make_sure(not match.include_top, "%s: the Xception base has its own 'predictions' layer; "
              "build it with include_top=False", path)
    make_sure(spec_channels(spec) == match.channels, "%s: the model's input has %d channels, "
              "its base's first convolution (block1_conv1) reads %d", path,
              spec_channels(spec), match.channels)
    try:
        net = OwnModelNet(spec)
    except ValueError as exc:
        raise ConversionError("%s: %s" % (path, exc))
    rows = build_name_table(include_top=False, channels=match.channels)
    arrays = dict(match.arrays)
    others = _other_layers(keras_file, own, base)
    extra_rows, extra_arrays, names = head_rows(path, spec, others)
    leftover = sorted(others)
    make_sure(not leftover, "%s: layer '%s' has weights but is not part of the model's "
              "preprocessing, base or head", path, leftover and leftover[0])
    arrays.update(extra_arrays)
    file_names = dict(match.file_names, **names)
    full = match._replace(include_top=False, classes=None, file_names=file_names,
                          arrays=arrays)
    return net, rows + extra_rows, full


