"""Fast inference: oneDNN-fused fp32, bf16 and int8 versions of a checkpoint.

- ``fp32``: the graph fused by oneDNN (conv + ReLU, conv + sum...) through
  ``Symbol.optimize_for('MKLDNN', shape_dict=...)``.  Two traps of MXNet
  1.9.1: without the input shapes ``optimize_for`` returns the graph
  unchanged, and with the parameters passed it fails on Xception's depthwise +
  pointwise + BatchNorm chains ("Shape inconsistent"); without them, the fused
  convolutions fold their BatchNorm when the network first runs.
- ``bf16``: BatchNorm folded into the convolutions in float32 (``folding.py``), MXNet's AMP
  graph conversion to bfloat16 (parameters cast where the ops allow it), then fused by oneDNN
  as fp32 is.
- ``int8``: oneDNN post-training quantization (``quantize_model_mkldnn``),
  calibrated (``naive``: min/max) on sample images.

Each can run with its channel counts padded to oneDNN's block of 16 (``padding.py``: 728 ->
736, the same function; 728 channels fall back to AVX2 kernels), by default where that is
faster (Intel AVX-512; bf16 on any AVX-512).  int8 and bf16 run on oneDNN's AMX kernels
where the caller raised oneDNN's ceiling to them (``cpu.cap_isa``; xception-predict does so
by default on CPUs with AMX).
Every network is a Gluon ``SymbolBlock`` hybridized with static allocation,
taking fp32 NCHW input preprocessed as usual; all of them output logits.
"""
import json
import os
import shutil

import mxnet as mx
import numpy as np

from xception_mx.atomic import atomic_path
from xception_mx.checkpoint.files import write_checkpoint
from xception_mx.checkpoint.labels import labels_path
from xception_mx.checkpoint.meta import QUANTIZE, build_meta
from xception_mx.checkpoint.reading import check_finite, load_params, load_symbol, read_meta
from xception_mx.cpu import BF16_FLAGS, why_no_bf16
from xception_mx.errors import make_sure
from xception_mx.model.padding import BLOCK, pad_network
from xception_mx.progress import progress
from xception_mx.serving.folding import fold_batchnorm
from xception_mx.serving.loading import check_params_fit, output_symbol, symbol_block
from xception_mx.serving.plan import OWN_PRECISION, PRECISIONS, plan_inference


def fuse_onednn(symbol, batch_shape):
    """The oneDNN-fused graph (conv + BatchNorm + ReLU + sum; fp32 or bf16)."""
    return symbol.optimize_for("MKLDNN", None, None, ctx=mx.cpu(),
                               shape_dict={"data": tuple(batch_shape)})


def to_bf16(symbol, arg_params, aux_params, batch_shape):
    """``(symbol, arg_params, aux_params)`` in bfloat16: BatchNorm folded into the
    convolutions in float32 (``folding.py``), converted by MXNet's AMP, then fused by oneDNN
    (conv + bias + ReLU + sum).  Folding first lets oneDNN fuse what AMP alone leaves in
    float32, and rounds the weights once instead of twice (the figures: bench/NOTES.md)."""
    from mxnet.contrib import amp
    symbol, arg_params, aux_params = amp.convert_model(
        *fold_batchnorm(symbol, arg_params, aux_params), target_dtype="bfloat16",
        cast_optional_params=True)
    return fuse_onednn(symbol, batch_shape), arg_params, aux_params


def quantize_int8(symbol, arg_params, aux_params, calibration):
    """``(symbol, arg_params, aux_params)`` quantized to int8, calibrated on the
    NCHW float32 batch ``calibration`` (min/max of each layer's output)."""
    import warnings
    from mxnet.contrib import quantization
    make_sure(calibration is not None and len(calibration) > 0,
              "int8 quantization needs calibration images")
    batch = min(len(calibration), 8)
    used = (len(calibration) // batch) * batch
    with warnings.catch_warnings(), progress(total=used, desc="calibration",
                                             step=batch) as bar:
        warnings.simplefilter("ignore", UserWarning)   # its Module warns of an unused label
        data = CountedIter(bar, data=calibration, batch_size=batch, label=None,
                           last_batch_handle="discard")
        return quantization.quantize_model_mkldnn(
            sym=symbol, arg_params=arg_params, aux_params=aux_params, ctx=mx.cpu(),
            calib_mode="naive", calib_data=data, num_calib_examples=used,
            quantized_dtype="auto", excluded_op_names=[], logger=None)


class CountedIter(mx.io.NDArrayIter):
    """An ``NDArrayIter`` that counts the images it hands out on a progress ``bar``."""

    def __init__(self, bar, **kwargs):
        super().__init__(**kwargs)
        self.bar = bar

    def next(self):
        batch = super().next()
        self.bar.update(self.batch_size)
        return batch


def without_copy_chains(symbol):
    """``symbol`` with every identity copy that reads another copy reading the first one's
    input instead (the same function).  MXNet 1.9.1's oneDNN partitioner loses the input of
    such a chain after a fused ``FullyConnected``: a head with ``Dense(relu)`` then two linear
    ``Activation`` layers failed with "needs parameter fc1_relu0_output0"."""
    graph = json.loads(symbol.tojson())
    nodes = graph["nodes"]
    for node in nodes:
        while node["op"] == "_copy" and nodes[node["inputs"][0][0]]["op"] == "_copy":
            node["inputs"][0] = list(nodes[node["inputs"][0][0]]["inputs"][0])
    return mx.sym.load_json(json.dumps(graph))


def optimized(symbol, arg_params, aux_params, precision, batch_shape, calibration=None,
              padded=False):
    """``(symbol, arg_params, aux_params)`` for ``precision`` (fp32, bf16 or int8, as a
    ``plan.Plan`` has it); with ``padded``, channel counts rounded up to oneDNN's block of 16
    first (the same function, see padding.py)."""
    assert precision in PRECISIONS, precision           # a plan's, checked when it was made
    no_bf16 = precision == "bf16" and why_no_bf16()
    make_sure(not no_bf16, "bf16 needs oneDNN's AVX-512 kernels (%s): %s; use fp32 or int8",
              ", ".join(BF16_FLAGS), no_bf16)
    symbol = without_copy_chains(symbol)
    if padded:
        symbol, arg_params, aux_params, _ = pad_network(symbol, arg_params, aux_params,
                                                        tuple(batch_shape))
    if precision == "fp32":
        return fuse_onednn(symbol, batch_shape), arg_params, aux_params
    if precision == "bf16":
        return to_bf16(symbol, arg_params, aux_params, batch_shape)
    return quantize_int8(symbol, arg_params, aux_params, calibration)


def logits_checkpoint(prefix, epoch=0):
    """``(meta, input shape (C, H, W), symbol with logits output, arg_params, aux_params)``."""
    meta = read_meta(prefix)
    symbol = output_symbol(load_symbol(prefix), "logits", meta)
    shape = (meta.channels,) + tuple(meta.input_size())
    return (meta, shape, symbol) + tuple(load_params(prefix, epoch))


def check_source_params(prefix, epoch, symbol, arg_params, aux_params, shape):
    """The fp32 checkpoint's parameters fit its symbol (for input ``shape`` (C, H, W)) and
    are finite."""
    where = "%s-%04d.params" % (prefix, epoch)
    check_params_fit(symbol, arg_params, aux_params, shape[1:], where, shape[0])
    check_finite(dict(arg_params, **aux_params), where, "its outputs would be NaN")


def load_fast_network(prefix, epoch=0, precision=OWN_PRECISION, batch_size=8,
                      calibration=None, pad_channels="auto", plan=None):
    """The checkpoint as a fast network (logits output) and its meta.

    ``precision`` defaults to the checkpoint's own (fp32 unless it was written
    by ``xception-quantize``); ``calibration``: NCHW float32 images for
    ``int8``; ``plan``: a ``plan.Plan`` made already (``precision`` and ``pad_channels``
    are then unused).  A quantized checkpoint is loaded as it is.
    """
    meta, shape, symbol, arg_params, aux_params = logits_checkpoint(prefix, epoch)
    plan = plan or plan_inference(meta, precision, pad_channels)
    if meta.is_serving_copy:
        make_sure(plan.precision == meta.precision, "%s holds an optimized %s network; run it "
                  "with --precision %s", prefix, meta.precision, meta.precision)
        return symbol_block(symbol, arg_params, aux_params, static=True), meta
    check_source_params(prefix, epoch, symbol, arg_params, aux_params, shape)
    symbol, arg_params, aux_params = optimized(symbol, arg_params, aux_params, plan.precision,
                                               (batch_size,) + shape, calibration, plan.padded)
    return symbol_block(symbol, arg_params, aux_params, static=True), meta


BF16_REFUSAL = ("bf16 is converted when the network is loaded (xception-predict --precision "
                "bf16): MXNet 1.9.1 cannot bind a saved AMP bf16 graph to float32 input ('This "
                "layer requires uniform type'); export int8 or fp32")


def export_checkpoint(prefix, out_prefix, precision="int8", calibration=None, epoch=0,
                      force=False, calibration_source=None, pad_channels="auto"):
    """Write the fast network of ``precision`` (int8 or fp32; logits output, channels padded
    as ``pad_channels`` says, oneDNN-fused or quantized) as normal symbol/params/meta files
    that ``mx.mod.Module`` and ``SymbolBlock.imports`` load; ``calibration`` (NCHW images)
    for int8 only."""
    make_sure(precision != "bf16", BF16_REFUSAL)
    meta, shape, symbol, arg_params, aux_params = logits_checkpoint(prefix, epoch)
    make_sure(not meta.is_serving_copy, "%s is already an optimized %s copy; export from "
              "its source, %s", prefix, meta.precision,
              meta.source_checkpoint("the checkpoint it was made from"))
    check_source_params(prefix, epoch, symbol, arg_params, aux_params, shape)
    make_sure(precision in PRECISIONS, "precision must be one of %s, got %r",
              ", ".join(PRECISIONS), precision)           # a copy states what it computes in
    plan = plan_inference(meta, precision, pad_channels)
    padded = []
    if plan.padded:
        symbol, arg_params, aux_params, padded = pad_network(symbol, arg_params, aux_params,
                                                             (1,) + shape)
    out_symbol, out_args, out_aux = optimized(symbol, arg_params, aux_params, plan.precision,
                                              (1,) + shape, calibration)
    calibrated = {"images": len(calibration), "mode": "naive",
                  "source": calibration_source} if precision == "int8" else None
    out_meta = build_meta(QUANTIZE, base=meta, precision=precision,
                          model=dict(meta.model, classifier_activation=None),
                          source_checkpoint=os.path.abspath(prefix),
                          optimized={"oneDNN": "fused" if precision == "fp32" else precision,
                                     "padded_convolutions": len(padded), "channel_block": BLOCK},
                          calibration=calibrated)
    as_numpy = {k: v.asnumpy() for k, v in out_args.items()}
    aux_numpy = {k: v.asnumpy() for k, v in out_aux.items()}
    paths = write_checkpoint(out_prefix, out_symbol, as_numpy, aux_numpy, out_meta, force=force)
    if os.path.exists(labels_path(prefix)):       # the class names go with the copy
        with atomic_path(labels_path(out_prefix)) as tmp:
            shutil.copyfile(labels_path(prefix), tmp)
        paths["labels"] = labels_path(out_prefix)
    elif os.path.exists(labels_path(out_prefix)):   # an earlier copy's (--force) would lie
        os.remove(labels_path(out_prefix))
    return paths


def logits_agreement(reference, candidate):
    """Fidelity of a fast network: max |logit deviation|, top-1 and ordered top-5 agreement."""
    deviation = float(np.abs(reference - candidate).max())
    top1 = float((reference.argmax(1) == candidate.argmax(1)).mean())
    top5 = float((np.argsort(-reference, 1)[:, :5] == np.argsort(-candidate, 1)[:, :5])
                 .all(1).mean())
    return {"max_abs": deviation, "top1": top1, "top5": top5}
