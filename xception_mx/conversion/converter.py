"""Keras Xception weights -> an MXNet checkpoint computing the same function."""
import collections
import os
import re

import mxnet as mx
import numpy as np

from xception_mx.atomic import sha256_file
from xception_mx.checkpoint.files import check_writable, write_checkpoint
from xception_mx.checkpoint.meta import KERAS2MXNET, build_meta
from xception_mx.errors import mxnet_error_text
from xception_mx.images.convention import input_convention
from xception_mx.model.own_model import network_symbol
from xception_mx.model.xception import (DEFAULT_INPUT_SIZE, Xception, check_input_shape,
                                        set_batchnorm)

from . import layouts
from .compile_config import compiled_recipe
from .errors import ConversionError, make_sure
from .keras_reader import read_keras_file
from .labels import check_label_count, checked_labels, write_labels
from .matching import match_layers
from .name_table import as_records, build_name_table, is_aux, keras_layers
from .own_model.keras_config import (batchnorm_settings, custom_layers, frozen_layers,
                                     is_plain_xception, layer_regularizers, model_config)
from .own_model.layers import SUPPORTED_TEXT
from .own_model.weights import convert_own_model, fill_missing_bn

STANDARD_FILES = ("xception_weights_tf_dim_ordering_tf_kernels.h5",
                  "xception_weights_tf_dim_ordering_tf_kernels_notop.h5")
MODELS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/xception/"

Conversion = collections.namedtuple(
    "Conversion", "net symbol arg_params aux_params rows match source warnings frozen "
    "batchnorm regularizers")


def keras_models_dir():
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def find_standard_weights():
    """The first of Keras' standard Xception files present in its models folder."""
    directory = keras_models_dir()
    for name in STANDARD_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise ConversionError(
        "no WEIGHTS given and no %s in %s; on a machine with internet run "
        "`python -c \"import keras; keras.applications.Xception()\"` (or download it from %s) "
        "and pass the file" % (" or ".join(STANDARD_FILES), directory, MODELS_URL))


def head_options(activation=None, pooling=None):
    """``keras2mxnet``'s ``--classifier-activation`` (softmax or none; None: not asked) and
    ``--pooling`` (none, avg, max; None: not asked) as ``convert``'s options: asking for an
    activation insists on a classifier, asking for a pooling on a feature extractor, neither
    follows the file."""
    return {"classifier_activation": None if activation == "none" else "softmax",
            "pooling": None if pooling in (None, "none") else pooling,
            "include_top": True if activation is not None else
                           (False if pooling is not None else None)}


def _resolve_head(path, include_top_file, include_top, pooling):
    if include_top is None:
        include_top = include_top_file
    make_sure(not include_top or include_top_file,
              "%s: a notop file (no 'predictions' layer) cannot give a classifier; drop "
              "--classifier-activation, or convert a file with the top", path)
    make_sure(include_top or not include_top_file,
              "%s: the file has a classifier ('predictions'); --pooling applies to notop files",
              path)
    return include_top, (None if include_top else pooling)


def build_params(rows, arrays):
    """Transform every Keras array into its MXNet parameter, each exactly once."""
    used = collections.Counter((row.keras_layer, row.keras_weight) for row in rows)
    make_sure(set(used) == set(arrays) and max(used.values()) == 1,
              "name table and file disagree: %s", sorted(set(used) ^ set(arrays))[:3])
    arg_params, aux_params = {}, {}
    for row in rows:
        value = layouts.FORWARD[row.transform](arrays[(row.keras_layer, row.keras_weight)])
        target = aux_params if is_aux(row) else arg_params
        make_sure(row.mxnet_param not in target, "%s is filled twice", row.mxnet_param)
        target[row.mxnet_param] = value
    return arg_params, aux_params


def check_against_symbol(symbol, arg_params, aux_params, input_size, channels):
    """Every symbol parameter is filled, with the shape the symbol infers."""
    height, width = input_size
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, channels, height, width))
    expected = dict(zip(symbol.list_arguments(), arg_shapes))
    expected.pop("data")
    expected.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    given = dict(arg_params, **aux_params)
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    make_sure(not missing, "MXNet parameters left unfilled: %s", ", ".join(missing[:5]))
    make_sure(not extra, "values for parameters the MXNet network lacks: %s",
              ", ".join(extra[:5]))
    for name, shape in expected.items():
        make_sure(tuple(given[name].shape) == tuple(shape),
                  "MXNet parameter %s: expected shape %s, converted shape %s", name,
                  tuple(shape), tuple(given[name].shape))


def non_finite_weights(path, match, strict=False):
    """Warnings for weights holding NaN or infinity; with ``strict`` an error."""
    found = []
    for (layer, role), array in match.arrays.items():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            found.append("%s: layer '%s' (file layer '%s'), weight %s: %d NaN/Inf values"
                         % (path, layer, match.file_names[layer], role, bad))
    make_sure(not (strict and found), "%s (--strict refuses non-finite weights)",
              found[0] if found else "")
    return found


def convert(weights_path, input_shape=None, classifier_activation="softmax",
            pooling=None, include_top=None, strict=False):
    """Read a Keras Xception file and build the equivalent MXNet network.

    ``include_top=None`` follows the file; ``True`` insists on a classifier,
    ``False`` on a feature extractor.  Weights with NaN/Inf are reported in
    ``warnings`` (an error with ``strict``).  A model file whose architecture
    is a base + head model (preprocessing, Xception base, head) gives
    that model (``OwnModelNet``); ``input_shape=None`` is then the size the
    model declares.  Nothing is written.
    """
    _refuse_custom_layers(weights_path, model_config(read_keras_file(weights_path,
                                                                     weights=False)))
    keras_file = read_keras_file(weights_path)
    config = model_config(keras_file)
    if config is not None and not _guarded(weights_path, is_plain_xception, config):
        make_sure(include_top is None and pooling is None, "%s: --classifier-activation and "
                  "--pooling apply to plain Xception files; this model's own head decides its "
                  "output", weights_path)
        net, rows, match = _guarded(weights_path, convert_own_model, keras_file, config,
                                    input_shape, strict)
    else:
        try:
            input_size = check_input_shape(input_shape or DEFAULT_INPUT_SIZE)
        except ValueError as exc:
            raise ConversionError("--input-shape: %s" % exc)
        match = _match_plain(keras_file, config)
        include_top, pooling = _resolve_head(weights_path, match.include_top, include_top,
                                             pooling)
        net = Xception(include_top=include_top, classes=match.classes or 1000, pooling=pooling,
                       classifier_activation=classifier_activation,
                       input_shape=input_size + (match.channels,))
        rows = build_name_table(include_top, match.classes, match.channels)
    warnings = non_finite_weights(weights_path, match, strict)
    arg_params, aux_params = build_params(rows, match.arrays)
    fill_missing_bn(net, arg_params)
    batchnorm = saved_batchnorm(weights_path, config, rows, match) if config else {}
    set_batchnorm(net, batchnorm)
    symbol = _graph_checked(weights_path, net, arg_params, aux_params)
    frozen = saved_frozen(weights_path, config, rows, match) if config is not None else []
    regularizers = by_table_layer(_guarded(weights_path, layer_regularizers, config), rows,
                                  match) if config else {}
    return Conversion(net, symbol, arg_params, aux_params, rows, match, keras_file, warnings,
                      frozen, batchnorm, regularizers)


WEIGHTS_ONLY_HINT = ("; the file holds weights only, without the model's architecture, so a "
                     "model with its own head or preprocessing cannot be rebuilt from it: "
                     "save the whole model (model.save('model.keras')) and convert that")


def _match_plain(keras_file, config):
    """``match_layers``; a weights-only file that holds more than Xception
    (nested models, extra layers: an own model's weights) is refused with
    what to do instead."""
    try:
        return match_layers(keras_file)
    except ConversionError as exc:
        more_than_xception = any(fl.parent for fl in keras_file.layers) or \
            len(keras_file.layers) > len(keras_layers(True, 1))
        if config is None and more_than_xception:
            raise ConversionError(str(exc) + WEIGHTS_ONLY_HINT)
        raise


def _refuse_custom_layers(path, config):
    """A layer of a class Keras does not define is the user's Python code, which no file
    holds: refused as such, before its weights are looked at."""
    custom = _guarded(path, custom_layers, config) if config else []
    if custom:
        name, cls, module = custom[0]
        raise ConversionError("%s: layer '%s' is a custom layer (class %s, module %s): its "
                              "computation is Python code the file does not hold; %s"
                              % (path, name, cls, module or "not recorded", SUPPORTED_TEXT))


def _graph_checked(path, net, arg_params, aux_params):
    """The network's symbol, checked against the converted parameters.  A model accepted so
    far whose MXNet graph still fails to build is one line naming the layer (the operator's
    name starts with it), never MXNet's traceback."""
    try:
        symbol = network_symbol(net)
        check_against_symbol(symbol, arg_params, aux_params, net.input_size,
                             net.config()["channels"])
        return symbol
    except mx.base.MXNetError as exc:
        operator = re.search(r"Error in operator (\S+?):", str(exc))
        names = [layer["name"] for part in ("preprocess", "head")
                 for layer in getattr(net, "spec", {}).get(part, []) if "name" in layer]
        layer = max((n for n in names if operator and operator.group(1).startswith(n + "_")),
                    key=len, default=None)
        raise ConversionError("%s: %s does not build as an MXNet graph (%s)" % (
            path, "layer '%s'" % layer if layer else "the model", mxnet_error_text(exc)))


def _guarded(path, function, *args):
    """Run ``function`` on a file's architecture JSON; JSON of an unexpected
    shape (a damaged or hand-edited file) is a clean error, not a traceback."""
    try:
        return function(*args)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise ConversionError("%s: the model architecture in the file is not one Keras "
                              "writes (%s: %s)" % (path, type(exc).__name__, exc))


def checkpoint_meta(conversion, epoch):
    """The ``PREFIX-meta.json`` record of a conversion."""
    source = conversion.source
    return build_meta(
        KERAS2MXNET,
        source={"path": os.path.abspath(source.path), "sha256": sha256_file(source.path),
                "bytes": os.path.getsize(source.path), "format": source.format,
                "keras_version": source.attrs.get("keras_version"),
                "backend": source.attrs.get("backend")},
        model=conversion.net.config(),
        epoch=epoch,
        input=input_convention(conversion.net.input_size, getattr(conversion.net, "spec", None),
                               conversion.net.config()["channels"]),
        name_table=as_records(conversion.rows, conversion.match.file_names),
        frozen_layers=conversion.frozen, batchnorm=conversion.batchnorm or None,
        regularizers=conversion.regularizers or None,
        recipe=compiled_recipe(source))


def saved_frozen(path, config, rows, match):
    """The name-table layers the file saved non-trainable (``layer.trainable = False``), which
    xception-finetune keeps frozen, as Keras would."""
    frozen = _guarded(path, frozen_layers, config)
    return sorted({row.keras_layer for row in rows
                   if match.file_names.get(row.keras_layer, row.keras_layer) in frozen})


def by_table_layer(found, rows, match):
    """``found`` (``{file layer: value}``) keyed by the name table's layers instead."""
    return {row.keras_layer: found[match.file_names.get(row.keras_layer, row.keras_layer)]
            for row in rows if match.file_names.get(row.keras_layer, row.keras_layer) in found}


def saved_batchnorm(path, config, rows, match):
    """``{name-table layer: {"momentum", "epsilon"}}`` of the BatchNorm layers whose settings
    in the file are not Keras' defaults: the network computes and trains with them."""
    return by_table_layer(_guarded(path, batchnorm_settings, config), rows, match)


def convert_file(weights_path, prefix, epoch=0, force=False, labels=None, **options):
    """Convert and write ``PREFIX-symbol.json``, ``PREFIX-%04d.params`` and
    ``PREFIX-meta.json`` (and ``PREFIX-labels.txt`` from the class names file ``labels``);
    return ``(conversion, paths)``."""
    check_writable(prefix, epoch, force)
    names = checked_labels(labels, prefix, force)
    conversion = convert(weights_path, **options)
    meta = checkpoint_meta(conversion, epoch)
    if names:
        check_label_count(labels, names, meta)
    paths = write_checkpoint(prefix, conversion.symbol, conversion.arg_params,
                             conversion.aux_params, meta, epoch=epoch, force=force)
    if names:
        paths["labels"] = write_labels(prefix, names)
    return conversion, paths
