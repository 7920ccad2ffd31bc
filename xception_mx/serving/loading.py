"""Load an exported Xception checkpoint and run it (no TensorFlow needed)."""
import json
import os
import struct

import mxnet as mx
import numpy as np
from mxnet import gluon

from xception_mx.atomic import directory_lock, sha256_file
from xception_mx.errors import InputError
from xception_mx.images.decode import load_images
from xception_mx.progress import progress as progress_bar
from xception_mx.serving.checkpoint import journal_path, recover_checkpoint

LOGITS_OUTPUT = "predictions_fwd_output"
FEATURES_OUTPUT = "block14_sepconv2_act_fwd_output"


def mxnet_error_text(exc):
    """The informative line of an MXNet error (they start with a C++ traceback)."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def read_meta(prefix):
    """``PREFIX-meta.json`` as a dict (``{}`` if the checkpoint has none), after
    completing a commit a killed writer left half done."""
    if os.path.exists(journal_path(prefix)):
        with directory_lock(os.path.dirname(os.path.abspath(prefix))):
            recover_checkpoint(prefix, clean=False)
    path = "%s-meta.json" % prefix
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError("%s: unreadable checkpoint metadata (%s)" % (path, exc))
    if not isinstance(meta, dict):
        raise InputError("%s: checkpoint metadata must be a JSON object" % path)
    return meta


def symbol_path(prefix):
    """``PREFIX-symbol.json``, which must exist: a checkpoint without it is no checkpoint."""
    path = "%s-symbol.json" % prefix
    if not os.path.isfile(path):
        raise InputError("%s: no such file (expected an MXNet checkpoint PREFIX-symbol.json)"
                         % path)
    return path


def load_symbol(prefix):
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


PARAMS_MAGIC = 0x112        # MXNet's NDArray-list file magic (uint64, little-endian)


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
    entry = read_meta(prefix).get("files", {}).get(key)
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


def is_transfer(meta):
    """Whether the checkpoint is a user's transfer model (base + head)."""
    return (meta or {}).get("model", {}).get("kind") == "transfer"


def is_serving_copy(meta):
    """Whether a checkpoint is an optimized copy written by ``xception-quantize`` (int8,
    bf16, or fused fp32 with padded channels) rather than a Keras-shaped fp32 checkpoint."""
    return meta.get("precision", "fp32") != "fp32" or "optimized" in meta


def require_keras_shaped(meta, prefix, purpose):
    """Refuse an optimized serving copy where Keras' shapes and layers are needed."""
    if is_serving_copy(meta):
        raise InputError("%s: an optimized %s checkpoint for serving (xception-quantize); %s "
                         "needs the fp32 checkpoint it came from (%s)"
                         % (prefix, meta.get("precision", "fp32"), purpose,
                            meta.get("source_checkpoint", "?")))


def takes_raw_pixels(meta):
    """Whether the checkpoint's ``data`` is raw 0..255 pixels (the model
    preprocesses inside) rather than Keras' ``x / 127.5 - 1``."""
    return list((meta or {}).get("input", {}).get("range", [-1.0, 1.0])) == [0.0, 255.0]


def output_symbol(symbol, output="default", meta=None):
    """The symbol cut at ``output``: ``'default'`` (as exported), ``'logits'``
    (plain Xception: before its softmax; a transfer model: its own output, as
    Keras gives it), an internal output name, or a list of them (grouped)."""
    if output == "default" or (output == "logits" and is_transfer(meta)):
        return symbol
    internals = symbol.get_internals()
    if isinstance(output, (list, tuple)):
        missing = [n for n in output if n not in internals.list_outputs()]
        if missing:
            raise InputError("the checkpoint has no outputs named %s" % ", ".join(missing[:3]))
        return mx.sym.Group([internals[n] for n in output])
    name = LOGITS_OUTPUT if output == "logits" else output
    if name not in internals.list_outputs():
        if output == "logits":
            return symbol
        raise InputError("the checkpoint has no output named %s" % name)
    return internals[name]


def check_params_fit(symbol, arg_params, aux_params, input_size, where, channels=3):
    """Every parameter the symbol needs is given, with the shape it infers for
    ``(1, channels, H, W)`` input."""
    needed = [n for n in symbol.list_arguments() if n != "data"]
    needed += symbol.list_auxiliary_states()
    given = dict(arg_params, **aux_params)
    missing = [n for n in needed if n not in given]
    if missing:
        raise InputError("%s: lacks parameters of the symbol: %s" % (where, ", ".join(missing[:4])))
    try:
        arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, channels) + tuple(input_size))
    except mx.base.MXNetError as exc:
        raise InputError("%s: the symbol does not accept %dx%d input (%s)"
                         % (where, input_size[0], input_size[1], mxnet_error_text(exc)))
    shapes = dict(zip(symbol.list_arguments(), arg_shapes))
    shapes.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    for name in needed:
        if tuple(given[name].shape) != tuple(shapes[name]):
            raise InputError("%s: %s has shape %s, the symbol wants %s for %dx%d input"
                             % (where, name, tuple(given[name].shape), tuple(shapes[name]),
                                input_size[0], input_size[1]))


def checkpoint_input_size(meta, default=(299, 299)):
    """The input size a checkpoint was built for, from its meta."""
    shape = meta.get("model", {}).get("input_shape")
    if shape:
        return tuple(shape)
    return tuple(default) if default else None


def checkpoint_channels(meta):
    """The input channels of a checkpoint (3 where its meta predates the key, or it has none)."""
    return int(meta.get("model", {}).get("channels", 3))


def checkpoint_images(files, meta):
    """Image files as the checkpoint's ``data`` input: its size and channels (images
    converted to grayscale for a 1-channel model), raw pixels or ``x / 127.5 - 1`` as its
    meta says."""
    return load_images(files, checkpoint_input_size(meta), raw=takes_raw_pixels(meta),
                       channels=checkpoint_channels(meta))


def load_network(prefix, epoch=0, output="default", ctx=None, input_size=None):
    """A Gluon ``SymbolBlock`` of the checkpoint, cut at ``output``, and its meta.

    Every parameter the (cut) symbol needs must be in the file with the shape
    the symbol infers for ``input_size`` (default: the size in the meta).
    """
    ctx = ctx or mx.cpu()
    meta = read_meta(prefix)
    input_size = tuple(input_size or checkpoint_input_size(meta))
    symbol = output_symbol(load_symbol(prefix), output, meta)
    arg_params, aux_params = load_params(prefix, epoch)
    check_params_fit(symbol, arg_params, aux_params, input_size,
                     "%s-%04d.params" % (prefix, epoch), checkpoint_channels(meta))
    return symbol_block(symbol, arg_params, aux_params, ctx=ctx), meta


def symbol_block(symbol, arg_params, aux_params, ctx=None, static=False):
    """A Gluon ``SymbolBlock`` holding the given parameters; ``static``
    hybridizes it with static allocation and shapes."""
    net = gluon.SymbolBlock(symbol, mx.sym.var("data", dtype="float32"))
    for name, param in net.collect_params().items():
        value = arg_params.get(name, aux_params.get(name))
        if value is None:
            raise InputError("the network needs parameter %s, which is missing" % name)
        param._load_init(value, ctx or mx.cpu())
    if static:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def run_batches(net, x, batch_size=8, ctx=None, progress=False, desc="forward"):
    """Run ``net`` over NCHW float32 ``x`` in batches of exactly ``batch_size``
    (the last one padded, so static-shape networks see one shape); return
    numpy outputs (a list of them for a network with several).  ``progress``: a bar (or
    log lines) over the images."""
    ctx = ctx or mx.cpu()
    outputs, several = [], False
    with progress_bar(total=len(x), desc=desc, enabled=progress, step=batch_size) as bar:
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size]
            real = len(batch)
            if real < batch_size:
                batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - real,
                                                         axis=0)])
            out = net(mx.nd.array(batch, ctx=ctx))
            several = isinstance(out, (list, tuple))
            outputs.append([o.asnumpy()[:real] for o in (out if several else [out])])
            bar.update(real)
    joined = [np.concatenate(parts) for parts in zip(*outputs)]
    return joined if several else joined[0]
