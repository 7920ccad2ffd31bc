"""Run an exported Xception checkpoint (no TensorFlow needed): the network cut at an output,
its parameters checked against the symbol, batches through it.  Reading the checkpoint is
``xception_mx.checkpoint``'s; its names imported here stay importable from here for one
release, as do the meta helpers that became ``Meta``'s accessors."""
import mxnet as mx
import numpy as np
from mxnet import gluon

from xception_mx.checkpoint.meta import as_meta
from xception_mx.checkpoint.reading import (check_finite, check_params_header,  # noqa: F401
                                            first_non_finite, load_params, load_symbol,
                                            read_meta, read_params_file, symbol_path,
                                            verify_against_meta)
from xception_mx.errors import InputError, mxnet_error_text  # noqa: F401
from xception_mx.images.decode import load_images
from xception_mx.images.transforms import DEFAULT_TRANSFORM
from xception_mx.progress import progress as progress_bar

LOGITS_OUTPUT = "predictions_fwd_output"
FEATURES_OUTPUT = "block14_sepconv2_act_fwd_output"


def output_symbol(symbol, output="default", meta=None):
    """The symbol cut at ``output``: ``'default'`` (as exported), ``'logits'``
    (plain Xception: before its softmax; an own model: its own output, as
    Keras gives it), an internal output name, or a list of them (grouped)."""
    if output == "default" or (output == "logits" and as_meta(meta).is_own_model):
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


def checkpoint_images(files, meta, transform=DEFAULT_TRANSFORM):
    """Image files as the checkpoint's ``data`` input: its size and channels (images
    converted to grayscale for a 1-channel model), brought to its size by ``transform``
    (``images.transforms.TRANSFORMS``), raw pixels or ``x / 127.5 - 1`` as its meta says."""
    meta = as_meta(meta)
    return load_images(files, meta.input_size(), raw=meta.takes_raw_pixels,
                       channels=meta.channels, transform=transform)


def load_network(prefix, epoch=0, output="default", ctx=None, input_size=None):
    """A Gluon ``SymbolBlock`` of the checkpoint, cut at ``output``, and its meta.

    Every parameter the (cut) symbol needs must be in the file with the shape
    the symbol infers for ``input_size`` (default: the size in the meta).
    """
    ctx = ctx or mx.cpu()
    meta = read_meta(prefix)
    input_size = tuple(input_size or meta.input_size())
    symbol = output_symbol(load_symbol(prefix), output, meta)
    arg_params, aux_params = load_params(prefix, epoch)
    check_params_fit(symbol, arg_params, aux_params, input_size,
                     "%s-%04d.params" % (prefix, epoch), meta.channels)
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


# --- the meta helpers of 0.2, kept for one release: use ``Meta``'s accessors -------------

def is_transfer(meta):
    """``Meta.is_own_model``."""
    return as_meta(meta).is_own_model


def is_serving_copy(meta):
    """``Meta.is_serving_copy``."""
    return as_meta(meta).is_serving_copy


def require_keras_shaped(meta, prefix, purpose):
    """``Meta.require_keras_shaped``."""
    as_meta(meta).require_keras_shaped(prefix, purpose)


def takes_raw_pixels(meta):
    """``Meta.takes_raw_pixels``."""
    return as_meta(meta).takes_raw_pixels


def checkpoint_input_size(meta, default=(299, 299)):
    """``Meta.input_size``."""
    return as_meta(meta).input_size(default)


def checkpoint_channels(meta):
    """``Meta.channels``."""
    return as_meta(meta).channels
