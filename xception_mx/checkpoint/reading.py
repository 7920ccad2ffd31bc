"""Read a checkpoint's files and check them before anything runs: its meta (``Meta``), its
symbol, its parameters (MXNet's header, the sha256 the meta records, finite values).

A reader first completes a commit a killed writer left half done (``files.py``).
"""
import json
import os
import struct

import mxnet as mx
import numpy as np

from xception_mx.atomic import directory_lock, sha256_file
from xception_mx.checkpoint.files import journal_path, recover_checkpoint
from xception_mx.checkpoint.meta import Meta
from xception_mx.errors import InputError, mxnet_error_text

PARAMS_MAGIC = 0x112        # MXNet's NDArray-list file magic (uint64, little-endian)


def read_meta(prefix):
    """``PREFIX-meta.json`` as a ``Meta`` (empty if the checkpoint has none), after
    completing a commit a killed writer left half done."""
    if os.path.exists(journal_path(prefix)):
        with directory_lock(os.path.dirname(os.path.abspath(prefix))):
            recover_checkpoint(prefix, clean=False)
    path = "%s-meta.json" % prefix
    if not os.path.exists(path):
        return Meta()
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError("%s: unreadable checkpoint metadata (%s)" % (path, exc))
    if not isinstance(meta, dict):
        raise InputError("%s: checkpoint metadata must be a JSON object" % path)
    return Meta(meta)


KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def keras_file_hint(prefix):
    """What to say when a checkpoint prefix names a Keras file ("" otherwise)."""
    if str(prefix).endswith(KERAS_SUFFIXES) and os.path.isfile(prefix):
        return ("; %s is a Keras file, not an MXNet checkpoint prefix: convert it first, "
                "keras2mxnet %s -o PREFIX" % (prefix, prefix))
    return ""


def symbol_path(prefix):
    """``PREFIX-symbol.json``, which must exist: a checkpoint without it is no checkpoint."""
    path = "%s-symbol.json" % prefix
    if not os.path.isfile(path):
        raise InputError("%s: no such file (expected an MXNet checkpoint PREFIX-symbol.json)%s"
                         % (path, keras_file_hint(prefix)))
    return path


def load_symbol(prefix):
    """The checkpoint's MXNet symbol, checked against the meta's sha256."""
    path = symbol_path(prefix)
    verify_against_meta(prefix, "symbol", path)
    try:
        with open(path, "rb") as f:
            graph = json.loads(f.read().decode("utf-8"))
        if not isinstance(graph, dict) or "nodes" not in graph or "heads" not in graph:
            raise ValueError("no 'nodes' and 'heads'")
        return mx.sym.load(path)
    except (ValueError, mx.base.MXNetError) as exc:
        raise InputError("%s: not a readable MXNet symbol file (%s)"
                         % (path, mxnet_error_text(exc)))


def check_params_header(path):
    """Refuse a file that is not an MXNet parameter file before MXNet parses it."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24:
        raise InputError("%s: truncated MXNet parameter file (%d bytes)" % (path, len(head)))
    magic, _, count = struct.unpack("<QQQ", head)
    if magic != PARAMS_MAGIC:
        raise InputError("%s: not an MXNet parameter file (bad header)" % path)
    if not 0 < count < 100000:
        raise InputError("%s: damaged MXNet parameter file (claims %d arrays)" % (path, count))


def verify_against_meta(prefix, key, path):
    """A file listed in ``PREFIX-meta.json`` must have the sha256 recorded there."""
    entry = read_meta(prefix).file_record(key)
    same_file = entry and str(entry.get("name", "")).rsplit("-", 1)[-1] == \
        os.path.basename(path).rsplit("-", 1)[-1]      # the prefix may have been renamed
    if same_file:
        if sha256_file(path) != entry.get("sha256"):
            raise InputError("%s: does not match %s-meta.json (sha256 differs): damaged, or "
                             "mixed from two writes; reconvert it" % (path, prefix))


def read_params_file(prefix, epoch):
    """The named arrays of ``PREFIX-%04d.params`` as saved (``arg:``/``aux:``
    prefixes kept), checked against the meta's sha256 and MXNet's file header
    before MXNet parses it."""
    path = "%s-%04d.params" % (prefix, epoch)
    if not os.path.isfile(path):
        raise InputError("%s: no such file (expected MXNet parameters for epoch %d)"
                         % (path, epoch))
    verify_against_meta(prefix, "params", path)
    check_params_header(path)
    try:
        saved = mx.nd.load(path)
    except (mx.base.MXNetError, OSError) as exc:
        raise InputError("%s: not a readable MXNet parameter file (%s)"
                         % (path, mxnet_error_text(exc)))
    if not isinstance(saved, dict):
        raise InputError("%s: expected named parameters (arg:/aux:)" % path)
    return saved


def load_params(prefix, epoch):
    """``(arg_params, aux_params)`` of ``PREFIX-%04d.params``."""
    saved = read_params_file(prefix, epoch)
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    return arg_params, aux_params


def first_non_finite(arrays):
    """``(name, count)`` of the first array (by name) holding NaN or infinity,
    or ``None``; ``arrays``: name -> NDArray or numpy array."""
    for name in sorted(arrays):
        value = arrays[name]
        value = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        if bad:
            return name, bad
    return None


def check_finite(arrays, where, consequence):
    """Refuse parameters holding NaN or infinity (a Keras file's own, which
    keras2mxnet converts with a warning) where they give nonsense."""
    bad = first_non_finite(arrays)
    if bad:
        raise InputError("%s: parameter %s holds %d NaN/Inf values; %s (keras2mxnet warns of "
                         "such weights, --strict refuses them)" % ((where,) + bad + (consequence,)))
