"""``mxnet2keras``: an MXNet Xception checkpoint back to Keras (an own
model's too, see ``own_model.to_keras``).

The inverse of ``keras2mxnet``, through the same name table and the inverse
layout transforms (``layouts.INVERSE``).  Keras itself builds the model and
writes the file, so whatever Keras writes, Keras reads: legacy ``.h5``
weights, Keras 3 ``.weights.h5``, or a ``.keras`` model.
"""
import os
import shutil

from xception_mx import keras_side
from xception_mx.atomic import atomic_path
from xception_mx.checkpoint.labels import labels_path
from xception_mx.checkpoint.reading import load_params, read_meta

from . import layouts
from .errors import ConversionError, make_sure
from .name_table import ROLES, build_name_table
from .own_model.to_keras import build_keras_own_model

PROG = "mxnet2keras"
OUTPUT_SUFFIXES = (".weights.h5", ".keras", ".h5")


def checkpoint_params(prefix, epoch=0):
    """``(meta, {MXNet name: numpy array})`` of an fp32 checkpoint."""
    meta = read_meta(prefix)
    meta.require_keras_shaped(prefix, "mxnet2keras")
    arg_params, aux_params = load_params(prefix, epoch)
    return meta, {k: v.asnumpy() for k, v in dict(arg_params, **aux_params).items()}


def xception_weights(params, include_top, classes, where, channels=3):
    """``{canonical layer: [arrays in Keras order]}`` of the Xception in ``params``."""
    rows = build_name_table(include_top, classes or 1, channels)
    missing = [r.mxnet_param for r in rows if r.mxnet_param not in params]
    make_sure(not missing, "%s: not an Xception checkpoint: lacks %s (%d of %d)",
              where, ", ".join(missing[:3]), len(missing), len(rows))
    weights = {}
    for row in rows:
        value = layouts.INVERSE[row.transform](params[row.mxnet_param])
        make_sure(tuple(value.shape) == tuple(row.keras_shape), "%s: %s has shape %s, Keras "
                  "needs %s", where, row.mxnet_param, value.shape, row.keras_shape)
        weights.setdefault(row.keras_layer, {})[row.keras_weight] = value
    return {layer: [roles[r] for r in ROLES[row_kind(rows, layer)]]
            for layer, roles in weights.items()}


def fill_xception(model, weights, prefix):
    """Set the weights of Keras' Xception ``model`` (possibly with weightless
    layers before it) from ``xception_weights``."""
    names = keras_side.canonical_names(model)
    make_sure(sorted(names.values()) == sorted(weights), "%s: the checkpoint's layers do not "
              "match Keras' Xception", prefix)
    for keras_name, canonical in names.items():
        model.get_layer(keras_name).set_weights(weights[canonical])
    return model


def keras_model(prefix, epoch=0):
    """Keras' model of the checkpoint, with its weights: Xception, or a
    user's own model rebuilt from the meta."""
    meta, params = checkpoint_params(prefix, epoch)
    where = "%s-%04d.params" % (prefix, epoch)
    if meta.is_own_model:
        spec = meta.own_model_spec
        base = xception_weights(params, False, None, where, meta.channels)
        model = build_keras_own_model(spec, params, where, lambda model: _as_saved(
            fill_xception(model, base, prefix), meta))
        head = {layer["name"] for layer in spec["head"]}
        return keras_side.set_keras_regularizers(model, {
            k: v for k, v in meta.regularizers.items() if k in head}, canonical=False)
    head = params.get("predictions_weight")
    include_top = head is not None
    classes = int(head.shape[0]) if include_top else None
    weights = xception_weights(params, include_top, classes, where, meta.channels)
    pooling = None if include_top else meta.pooling
    model = keras_side.keras_xception(include_top, classes or 1000, pooling, None,
                                      meta.input_size(), meta.channels)
    return _as_saved(fill_xception(model, weights, prefix), meta)


def _as_saved(xception, meta):
    """Keras' Xception with the file's BatchNorm settings and regularizers."""
    keras_side.set_keras_batchnorm(xception, meta.batchnorm)
    return keras_side.set_keras_regularizers(xception, meta.regularizers)


def row_kind(rows, layer):
    return next(r.kind for r in rows if r.keras_layer == layer)


def output_format(path):
    for suffix in OUTPUT_SUFFIXES:
        if path.endswith(suffix):
            return suffix
    raise ConversionError("-o %s: expected a .weights.h5, .h5 or .keras file name" % path)


def write_keras(prefix, out, epoch=0, force=False):
    """Build the checkpoint's Keras model (``keras_model``) and save it to ``out``."""
    suffix = output_format(out)
    make_sure(force or not os.path.exists(out), "%s: already exists; pass --force to overwrite "
              "it", out)
    directory = os.path.dirname(os.path.abspath(out))
    make_sure(os.path.isdir(directory), "%s: output folder does not exist", directory)
    make_sure(os.access(directory, os.W_OK), "%s: cannot write to the output folder", directory)
    make_sure(suffix == ".keras" or not read_meta(prefix).is_own_model, "-o %s: %s holds a "
              "model with its own head; it is written as a whole .keras model (a weights file "
              "would lose the architecture)", out, prefix)
    model = keras_model(prefix, epoch)
    with atomic_path(out) as tmp:
        keras_side.save_keras(model, tmp, {".weights.h5": "weights-h5", ".keras": "keras",
                                           ".h5": "legacy-h5"}[suffix])
    written = [out]
    if os.path.exists(labels_path(prefix)):
        labels_out = out[:-len(suffix)] + "-labels.txt"
        with atomic_path(labels_out) as tmp:
            shutil.copyfile(labels_path(prefix), tmp)
        written.append(labels_out)
    return written, model
