"""Read the weights of a Keras model with h5py alone (no TensorFlow, no Keras).

Formats read:
1. legacy weight files written by Keras 1.2, 2.x and 3.x (``save_weights`` to
   ``.h5``; the files Keras downloads into ``~/.keras/models/``): a root
   ``layer_names`` attribute (possibly split over ``layer_names0``,
   ``layer_names1``...) and one group per layer whose ``weight_names`` say what
   each dataset is (``kernel:0``, ``block1_conv1_W``, ``running_std``...);
2. legacy full-model ``.h5`` files: the same under ``model_weights/``;
3. Keras 3 ``.weights.h5``: ``layers/<class>_<N>/vars/<i>``, numbered by class
   and by position in ``model.layers``, with the layer's name in a ``name``
   attribute on recent Keras versions;
4. Keras 3 ``.keras`` zip archives holding a ``model.weights.h5`` of format 3.

The result is a ``KerasFile``: every weighted layer with its weights by role
(``kernel``, ``depthwise_kernel``, ``gamma``, ``moving_variance``...).  Which
layer is which Xception layer is decided in ``matching``.
"""
import collections
import io
import json
import os
import re
import zipfile
import zlib

import h5py
import numpy as np

from .errors import ConversionError, make_sure
from .name_table import KERAS3_CLASS, ROLES

LEGACY_WEIGHTS, LEGACY_MODEL, KERAS3_WEIGHTS, KERAS_ARCHIVE = (
    "legacy-weights-h5", "legacy-model-h5", "keras3-weights-h5", "keras-archive")
ZIP_SIGNATURE = b"PK\x03\x04"
ARCHIVE_WEIGHTS = "model.weights.h5"
# Xception's largest tensor is 1536x2048 (block14_sepconv2 pointwise); a
# 100k-class head would be 2048x100000.  Anything larger is refused unread.
MAX_TENSOR_ELEMENTS = 2048 * 100000
# The weights inside a .keras archive: Xception's are 92 MB; refuse to inflate
# more than this (zip bombs).
MAX_ARCHIVE_WEIGHTS_BYTES = 2 << 30
MAX_ARCHIVE_METADATA_BYTES = 1 << 20
ARCHIVE_CONFIG = "config.json"
MAX_ARCHIVE_CONFIG_BYTES = 16 << 20

# Weight names as Keras 1 (`_W`, `_running_std`, which holds the variance),
# Keras 2 and Keras 3 write them, to the role they play.
ROLE_ALIASES = {
    "kernel": "kernel", "W": "kernel", "bias": "bias", "b": "bias",
    "depthwise_kernel": "depthwise_kernel", "pointwise_kernel": "pointwise_kernel",
    "gamma": "gamma", "beta": "beta",
    "moving_mean": "moving_mean", "running_mean": "moving_mean",
    "moving_variance": "moving_variance", "running_std": "moving_variance",
    "mean": "mean", "variance": "variance", "count": "count",
}
KIND_OF_KERAS3_CLASS = {cls: kind for kind, cls in KERAS3_CLASS.items()}

FileLayer = collections.namedtuple("FileLayer",
                                   "name path keras3_class keras3_index weights parent")
FileLayer.__new__.__defaults__ = (None,)
FileLayer.__doc__ = """A layer with weights as found in a file: its name (``None`` in a
Keras 3 file that does not record names), its path in the file, its Keras 3
class and number (Keras 3 files only), ``{role: ndarray}``, and the name of
the nested model it sits in (``None`` at the top level)."""

KerasFile = collections.namedtuple("KerasFile", "path format attrs layers")
KerasFile.__doc__ = """A read Keras file: path, format, attributes
(``keras_version``, ``backend``; a whole model's ``model_config`` and ``training_config``, as
JSON text) and its weighted ``FileLayer``s in file order."""


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def load_attribute_list(group, name):
    """A list attribute that h5py may have split into ``name0``, ``name1``...

    Keras splits attributes larger than HDF5's 64 KiB header limit that way.
    """
    if name in group.attrs:
        return [_text(v) for v in group.attrs[name]]
    values, chunk = [], 0
    while "%s%d" % (name, chunk) in group.attrs:
        values.extend(_text(v) for v in group.attrs["%s%d" % (name, chunk)])
        chunk += 1
    return values


def weight_role(layer_name, weight_name):
    """The role of a legacy weight: ``block1_conv1/kernel:0``,
    ``block1_conv1_W:0``, ``batchnormalization_3_running_std`` and the like."""
    base = re.sub(r":\d+$", "", weight_name.rsplit("/", 1)[-1])
    if base.startswith(layer_name + "_"):
        base = base[len(layer_name) + 1:]
    if base in ROLE_ALIASES:
        return ROLE_ALIASES[base]
    for alias in sorted(ROLE_ALIASES, key=len, reverse=True):
        if base.endswith("_" + alias):
            return ROLE_ALIASES[alias]
    return None


def _sublayer(weight_name):
    """``block1_conv1`` of ``block1_conv1/kernel:0`` (None without a scope)."""
    parts = weight_name.split("/")
    return parts[-2] if len(parts) >= 2 else None


def _read_legacy_layers(path, root):
    """Every weighted layer; a nested model's group (``xception`` holding
    ``block1_conv1/kernel:0``, ``conv2d/kernel:0``...) gives one layer per
    scope, with the model as ``parent``."""
    layers = []
    for layer_name in load_attribute_list(root, "layer_names"):
        make_sure(layer_name in root, "%s: layer '%s' is listed in layer_names but has no group",
                  path, layer_name)
        group = root[layer_name]
        weight_names = load_attribute_list(group, "weight_names")
        scopes = {_sublayer(w) for w in weight_names}
        nested = len(scopes) > 1
        by_layer = collections.OrderedDict()
        for weight_name in weight_names:
            name = _sublayer(weight_name) if nested else layer_name
            weights = by_layer.setdefault(name, {})
            role = weight_role(name, weight_name)
            make_sure(role is not None, "%s: layer '%s': cannot tell what weight '%s' is "
                      "(expected a kernel, bias, depthwise/pointwise kernel or BatchNorm "
                      "statistic)", path, name, weight_name)
            make_sure(role not in weights, "%s: layer '%s' has two %s weights", path, name, role)
            make_sure(weight_name in group, "%s: layer '%s': weight '%s' is listed but missing",
                      path, layer_name, weight_name)
            weights[role] = _read_dataset(path, group[weight_name], name)
        for name, weights in by_layer.items():
            if nested:
                layers.append(FileLayer(name, "%s/%s" % (group.name, name), None, None, weights,
                                        layer_name))
            else:
                layers.append(FileLayer(name, group.name, None, None, weights))
    return layers


def _read_dataset(path, dataset, layer_name):
    """A weight as float32, after checking its type and size *before* reading it
    (a hostile file may claim a huge shape or hold objects and references)."""
    make_sure(isinstance(dataset, h5py.Dataset), "%s: layer '%s': '%s' is not a dataset",
              path, layer_name, dataset.name)
    make_sure(dataset.dtype.kind == "f", "%s: layer '%s': weight '%s' is not a floating-point "
              "array (dtype %s)", path, layer_name, dataset.name, dataset.dtype)
    size = int(np.prod(dataset.shape, dtype=np.float64)) if dataset.shape else 1
    make_sure(size <= MAX_TENSOR_ELEMENTS, "%s: layer '%s': weight '%s' claims shape %s (%d "
              "values); no Xception tensor has more than %d", path, layer_name, dataset.name,
              dataset.shape, size, MAX_TENSOR_ELEMENTS)
    array = dataset[()]
    make_sure(isinstance(array, np.ndarray), "%s: layer '%s': weight '%s' is a scalar",
              path, layer_name, dataset.name)
    return np.asarray(array, dtype=np.float32)


def _split_keras3_group_name(group_name):
    match = re.fullmatch(r"(.+?)(?:_(\d+))?", group_name)
    return match.group(1), int(match.group(2) or 0)


def _read_keras3_layers(path, root, parent=None):
    """Every weighted layer under ``root/layers``, nested models' too."""
    make_sure("layers" in root and isinstance(root["layers"], h5py.Group),
              "%s: not a Keras weights file: no 'layers' group and no 'layer_names'", path)
    layers = []
    for group_name, group in root["layers"].items():
        if not isinstance(group, h5py.Group):
            continue
        if "layers" in group and isinstance(group["layers"], h5py.Group):
            name = group["vars"].attrs.get("name") if "vars" in group else None
            layers += _read_keras3_layers(path, group, _text(name) if name is not None
                                          else group_name)
            continue
        if "vars" not in group:
            continue
        variables = group["vars"]
        indices = sorted(variables, key=lambda k: int(k) if k.isdigit() else -1)
        if not indices:
            continue
        make_sure(all(i.isdigit() for i in indices), "%s: %s: variables must be numbered 0, 1, "
                  "..., found %s", path, variables.name, ", ".join(indices))
        cls, number = _split_keras3_group_name(group_name)
        kind = KIND_OF_KERAS3_CLASS.get(cls)
        roles = ROLES.get(kind, ())
        weights = {}
        for i in indices:
            role = roles[int(i)] if int(i) < len(roles) else "variable_%s" % i
            weights[role] = _read_dataset(path, variables[i], group_name)
        name = variables.attrs.get("name")
        layers.append(FileLayer(None if name is None else _text(name), group.name, cls, number,
                                weights, parent))
    return layers


def _root_attrs(group):
    return {key: _text(group.attrs[key]) for key in ("keras_version", "backend")
            if key in group.attrs}


def read_h5(path, handle, archive_attrs=None):
    """Read an open HDF5 file in any of the formats above."""
    with h5py.File(handle, "r") as f:
        if "model_weights" in f and isinstance(f["model_weights"], h5py.Group):
            root, fmt = f["model_weights"], LEGACY_MODEL
            attrs = dict(_root_attrs(f), **_root_attrs(root))
        elif "layer_names" in f.attrs or "layer_names0" in f.attrs:
            root, fmt, attrs = f, LEGACY_WEIGHTS, _root_attrs(f)
        else:
            root, fmt, attrs = f, KERAS3_WEIGHTS, {}
        if archive_attrs is not None:
            fmt, attrs = KERAS_ARCHIVE, archive_attrs
        if fmt == LEGACY_MODEL:
            attrs.update(_config_attrs(f))
        if fmt in (LEGACY_MODEL, LEGACY_WEIGHTS):
            layers = _read_legacy_layers(path, root)
        else:
            layers = _read_keras3_layers(path, root)
    return KerasFile(path, fmt, attrs, layers)


def _config_attrs(f):
    """A full-model HDF5 file's architecture (``model_config``) and compile config
    (``training_config``), as JSON text."""
    return {key: _text(f.attrs[key]) for key in ("model_config", "training_config")
            if key in f.attrs}


def _read_member(path, archive, name, limit):
    """One archive member, refusing to inflate more than ``limit`` bytes
    (whatever the header claims).  Members are never extracted to disk, so
    names like ``../../x`` cannot write anywhere."""
    info = archive.getinfo(name)
    make_sure(info.file_size <= limit, "%s: archive member %s claims %d bytes unpacked (limit "
              "%d): not a Keras Xception archive", path, name, info.file_size, limit)
    with archive.open(info) as member:
        data = member.read(limit + 1)
    make_sure(len(data) <= limit, "%s: archive member %s unpacks to more than %d bytes (a zip "
              "bomb?)", path, name, limit)
    return data


def _archive_attrs(path, archive):
    """A .keras archive's Keras version and architecture (``config.json``)."""
    names = archive.namelist()
    make_sure(ARCHIVE_WEIGHTS in names, "%s: a zip archive but not a .keras model: no %s "
              "inside (found %s)", path, ARCHIVE_WEIGHTS, ", ".join(names[:5]) or "nothing")
    attrs = {}
    if "metadata.json" in names:
        metadata = json.loads(_read_member(path, archive, "metadata.json",
                                           MAX_ARCHIVE_METADATA_BYTES))
        if isinstance(metadata, dict) and "keras_version" in metadata:
            attrs["keras_version"] = str(metadata["keras_version"])
    if ARCHIVE_CONFIG in names:
        attrs["model_config"] = _read_member(path, archive, ARCHIVE_CONFIG,
                                             MAX_ARCHIVE_CONFIG_BYTES).decode("utf8")
    return attrs


def _read_archive(path, weights=True):
    with zipfile.ZipFile(path) as archive:
        attrs = _archive_attrs(path, archive)
        if not weights:
            return KerasFile(path, KERAS_ARCHIVE, attrs, [])
        data = _read_member(path, archive, ARCHIVE_WEIGHTS, MAX_ARCHIVE_WEIGHTS_BYTES)
    return read_h5(path, io.BytesIO(data), archive_attrs=attrs)


def _read_h5_attrs(path):
    """An HDF5 file's Keras version, backend and architecture (``model_config``), with no
    weight read."""
    with h5py.File(path, "r") as f:
        attrs = _root_attrs(f)
        if "model_weights" in f and isinstance(f["model_weights"], h5py.Group):
            attrs.update(_root_attrs(f["model_weights"]))
        attrs.update(_config_attrs(f))
    return KerasFile(path, LEGACY_MODEL if "model_config" in attrs else None, attrs, [])


def check_readable(path):
    """Fail with a clear message unless ``path`` is a non-empty regular file."""
    make_sure(os.path.exists(path), "%s: no such file", path)
    make_sure(not os.path.isfile(os.path.join(path, "saved_model.pb")), "%s: a TensorFlow "
              "SavedModel folder, which this converter does not read; load it with the Keras "
              "that saved it and save it again as .keras or .h5 (model.save('model.keras'))",
              path)
    make_sure(not os.path.isdir(path), "%s: is a directory, expected a Keras weights file", path)
    make_sure(os.path.getsize(path) > 0, "%s: file is empty (0 bytes)", path)


def read_keras_file(path, weights=True):
    """Read every weighted layer of a Keras weights or model file; with ``weights=False``
    only its attributes (Keras version, ``model_config``), for a look at the architecture.

    Raises:
        ConversionError: the file is missing, empty, truncated, damaged, or not
            in one of the formats above.
    """
    check_readable(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_SIGNATURE))
        if head == ZIP_SIGNATURE:
            return _read_archive(path, weights)
        make_sure(h5py.is_hdf5(path), "%s: not a Keras weights file: expected HDF5 (.h5, "
                  ".weights.h5) or a .keras zip archive", path)
        return read_h5(path, path) if weights else _read_h5_attrs(path)
    except ConversionError:
        raise
    except zipfile.BadZipFile as exc:
        raise ConversionError("%s: damaged or truncated .keras archive (%s)" % (path, exc))
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, EOFError, zlib.error,
            NotImplementedError, OverflowError, MemoryError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConversionError("%s: damaged or truncated file, cannot be read (%s)"
                              % (path, detail))
