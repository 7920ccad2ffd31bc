"""Named fault-injection points, for tests; inert unless asked for.

With ``XCEPTION_MX_KILL_POINT=NAME`` in the environment, the process that
reaches ``fault_point(NAME)`` writes ``PID NAME`` to the file named by
``XCEPTION_MX_KILL_MARK`` and waits there (up to a minute) to be killed.  A
kill test thus knows that the process was alive, and exactly where, when the
signal landed.  The points:

- any checkpoint writer (``checkpoint.write_checkpoint``):
  ``checkpoint:before-temp-files``, ``checkpoint:params-written`` (a
  temporary params file exists, not the others), ``checkpoint:journal-written``
  (the commit point passed, nothing renamed yet),
  ``checkpoint:first-rename-done``, ``checkpoint:committed``;
- a fine-tuning run: ``epoch-N:checkpoint-started`` (epoch N trained, its files
  not written yet), ``epoch-N:checkpoint-written`` (epoch N complete on disk,
  epoch N+1 not started), ``epoch-N:step-K`` (step K of epoch N trained, mid-epoch: the
  multi-host tests set a link down there); N and K count from 1, as the files epoch-000N do.

With ``XCEPTION_MX_CRASH_POINT=NAME`` instead, the process that reaches the point crashes
there as a native library would (a segmentation fault): a test checks what such a crash
reports (``commands.runner.report_crashes``) and leaves behind.

With ``XCEPTION_MX_TRACE=FILE``, every point reached appends ``TIME NAME`` to
FILE: the robustness harness times a run with it, and after a random kill
reads which phase the kill landed in.

And one probe: with ``XCEPTION_MX_BN_DUMP=FOLDER``, a fine-tuning run saves
every device's copy of the BatchNorm statistics of epoch N before and after
they are averaged, to ``FOLDER/bn-{before,after}-epochN-rankR.npz`` (keys
``NAME@DEVICE``), so that a test can check the averaging of a real run.

And one alteration: with ``XCEPTION_MX_BN_FAULT=LAYER:KEY=VALUE`` (``KEY``: ``epsilon`` or
``momentum``; several separated by commas), ``alter_batchnorm`` gives that BatchNorm layer of
an MXNet training network another epsilon or momentum than Keras' (``xception-parity
--training`` must name it).

And the defects the training comparisons must see, named in ``XCEPTION_MX_FAULT`` (several
separated by commas; ``injected(NAME)`` is the value after ``NAME=``, ``""`` without one,
``None`` when not named):

- ``gradient=LAYER*FACTOR``: every gradient of that Keras layer's parameters multiplied by
  FACTOR after the backward pass (``forward_backward``); ``LAYER+LAYER*FACTOR``: of several;
- ``drop-regularizers``: the file's regularizers left out of the loss;
- ``no-keras2-variance``: Keras 2's Bessel-corrected moving variance not applied;
- ``frozen-bn-on-batch-statistics``: the frozen layers' BatchNorm normalising with the batch's
  statistics instead of the moving ones.

And one for ``xception-export --format onnx``'s check: ``onnx-weight=NAME*FACTOR``, that
initializer of the exported model scaled before ONNX Runtime runs it, as a wrong translation
would leave it (``alter_onnx_weight``).

And one stand-in: ``mxnet-library=PATH``, the shared library whose GPU code ``--gpus`` checks
(``training.distributed.gpu_code``) instead of the installed ``libmxnet.so``.
"""
import ctypes
import os
import time

import numpy as np

from xception_mx.model.padding import cut_array
from xception_mx.model.xception import batchnorm_blocks

KILL_POINT = "XCEPTION_MX_KILL_POINT"
KILL_MARK = "XCEPTION_MX_KILL_MARK"
TRACE = "XCEPTION_MX_TRACE"
CRASH_POINT = "XCEPTION_MX_CRASH_POINT"
WAIT_SECONDS = 60


def fault_point(name):
    """Stop here to be killed when the environment names this point (or crash here); note the
    time it was reached when a trace is asked for."""
    trace = os.environ.get(TRACE)
    if trace:
        with open(trace, "a") as f:
            f.write("%.6f %s\n" % (time.time(), name))
    if os.environ.get(CRASH_POINT) == name:
        ctypes.string_at(0)          # reads address 0: SIGSEGV, as a crashing kernel would
    if os.environ.get(KILL_POINT) != name:
        return
    mark = os.environ[KILL_MARK]
    with open(mark + ".tmp", "w") as f:
        f.write("%d %s\n" % (os.getpid(), name))
    os.replace(mark + ".tmp", mark)
    time.sleep(WAIT_SECONDS)


BN_DUMP = "XCEPTION_MX_BN_DUMP"
PARAMS_DUMP = "XCEPTION_MX_PARAMS_DUMP"


def _save_device_copies(folder, name, net, shapes, keep=lambda param_name: True):
    """Every device's copy of the parameters ``keep`` accepts, in Keras' shapes (``shapes``:
    the network's padded_training.ShapeMap), to ``FOLDER/NAME.npz`` (keys ``NAME@DEVICE``)."""
    arrays = {"%s@%d" % (name_, i): cut_array(copy.asnumpy(), shapes.keras_shape(name_, param))
              for name_, param in net.collect_params().items() if keep(name_)
              for i, copy in enumerate(param.list_data())}
    np.savez(os.path.join(folder, name + ".npz"), **arrays)


def dump_bn_statistics(net, epoch, rank, stage, shapes):
    """Save every device's BN running statistics of ``epoch`` at ``stage``
    (``before``/``after`` averaging), in Keras' shapes, when asked."""
    folder = os.environ.get(BN_DUMP)
    if folder:
        _save_device_copies(folder, "bn-%s-epoch%d-rank%d" % (stage, epoch, rank), net, shapes,
                            lambda name: name.endswith(("_running_mean", "_running_var")))


def dump_parameters(net, epoch, rank, shapes):
    """Save every device's copy of every parameter at the end of ``epoch`` (after the BN
    statistics are averaged), in Keras' shapes, when asked: what each worker of a job holds,
    which only rank 0 writes otherwise."""
    folder = os.environ.get(PARAMS_DUMP)
    if folder:
        _save_device_copies(folder, "params-epoch%d-rank%d" % (epoch, rank), net, shapes)


BN_FAULT = "XCEPTION_MX_BN_FAULT"
BN_FAULT_KEYS = {"epsilon": "eps", "momentum": "momentum"}


FAULT = "XCEPTION_MX_FAULT"
GRADIENT_ROLES = ("weight", "bias", "gamma", "beta", "depthwise_weight", "pointwise_weight")


def injected(name):
    """The value of fault ``name`` in ``XCEPTION_MX_FAULT`` (``""`` when it has none), or
    ``None`` when the environment does not name it."""
    for fault in filter(None, os.environ.get(FAULT, "").split(",")):
        key, _, value = fault.partition("=")
        if key == name:
            return value
    return None


def alter_gradients(net):
    """Multiply layers' gradients when ``XCEPTION_MX_FAULT`` names ``gradient=LAYER*F``:
    every trainable parameter whose name is the layer's (``LAYER_...``, in the training
    network's names, which are Keras' layer names)."""
    fault = injected("gradient")
    if not fault:
        return
    layers, factor = fault.rsplit("*", 1)
    names = {"%s%s_%s" % (net.prefix, layer, role) for layer in layers.split("+")
             for role in GRADIENT_ROLES}
    hit = [p for name, p in net.collect_params().items()
           if name in names and p.grad_req != "null"]
    assert hit, "XCEPTION_MX_FAULT gradient=%s: no trainable parameter of that layer" % fault
    for param in hit:
        for grad in param.list_grad():
            grad[:] = grad * float(factor)


def alter_batchnorm(net):
    """Change one BatchNorm layer's epsilon or momentum when the environment asks for it."""
    for fault in filter(None, os.environ.get(BN_FAULT, "").split(",")):
        layer, setting = fault.split(":", 1)
        key, value = setting.split("=", 1)
        for block in batchnorm_blocks(net, [layer]):
            block._kwargs[BN_FAULT_KEYS[key]] = float(value)


def alter_onnx_weight(model):
    """Scale one initializer of an ONNX model when ``XCEPTION_MX_FAULT`` names
    ``onnx-weight=NAME*FACTOR``; returns the model."""
    fault = injected("onnx-weight")
    if not fault:
        return model
    from onnx import numpy_helper
    name, _, factor = fault.partition("*")
    for i, weight in enumerate(model.graph.initializer):
        if weight.name == name:
            value = numpy_helper.to_array(weight) * np.float32(factor)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
            return model
    raise AssertionError("XCEPTION_MX_FAULT onnx-weight=%s: no such initializer" % fault)
