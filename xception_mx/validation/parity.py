"""Compare a converted MXNet checkpoint with the Keras model it came from.

Both run on the same preprocessed batch; the comparison is made on logits
(for a checkpoint that ends in softmax, the MXNet output just before it, and a
Keras model built with ``classifier_activation=None``) or, for a notop
checkpoint, on its features.
"""
import collections
import os

import mxnet as mx
import numpy as np

from xception_mx import keras_side
from xception_mx.checkpoint.reading import read_meta
from xception_mx.conversion.own_model.same_model import read_file_own_model
from xception_mx.errors import InputError
from xception_mx.images.decode import image_files, load_images
from xception_mx.model.own_model_inputs import check_model_input
from xception_mx.serving.loading import load_network, run_batches

from . import layers
from .metrics import max_deviation, max_magnitude

Record = collections.namedtuple("Record", "name max_abs max_rel top1 top5 output",
                                defaults=(None,))
Record.__doc__ = """Per input (and output, for a model with several): max |keras - mxnet|,
that divided by max |keras|, whether the top-1 class and the ordered top-5 agree (``None``
for features), and the output's name (``None`` for a model with one)."""


def build_inputs(images, random_count, seed, input_size, raw=False, channels=3):
    """``(names, x)``: decoded images (to ``channels``: grayscale for 1) then a seeded
    uniform batch, in ``[-1, 1]`` (Keras' preprocessing) or with ``raw`` in ``[0, 255]``."""
    names, batches = [], []
    if images:
        files = image_files(images)
        batches.append(load_images(files, input_size, raw=raw, channels=channels))
        names.extend(os.path.basename(f) for f in files)
    if random_count:
        rng = np.random.RandomState(seed)
        low, high = (0.0, 255.0) if raw else (-1.0, 1.0)
        batches.append(rng.uniform(low, high, (random_count, channels) + tuple(input_size))
                       .astype(np.float32))
        names.extend("random[%d]" % i for i in range(random_count))
    if not batches:
        raise InputError("nothing to compare: give images or folders, or --random N")
    return names, np.concatenate(batches)


def compare_outputs(names, keras_out, mx_out, output=None):
    """One ``Record`` per input (of ``output``, for a model with several)."""
    records = []
    for name, k, m in zip(names, keras_out, mx_out):
        diff = max_deviation(k, m)
        rel = diff / max(max_magnitude(k), 1e-30)
        top1 = top5 = None
        if k.ndim == 1:
            top1 = bool(np.argmax(k) == np.argmax(m))
            top5 = bool((np.argsort(-k)[:5] == np.argsort(-m)[:5]).all())
        records.append(Record(name, diff, rel, top1, top5, output))
    return records


def format_records(records, atol):
    """A readable table, one line per input (and output), and a verdict line."""
    width = max([len("input")] + [len(r.name) for r in records])
    outputs = [r.output for r in records if r.output is not None]
    out_width = max([len("output")] + [len(o) for o in outputs])
    lines = [("%-*s  " % (out_width, "output") if outputs else "") + "%-*s  %12s  %12s  %5s  "
             "%5s" % (width, "input", "max_abs", "max_rel", "top1", "top5")]
    fmt = {True: "yes", False: "NO", None: "-"}
    for r in records:
        lines.append(("%-*s  " % (out_width, r.output) if outputs else "") +
                     "%-*s  %12.3e  %12.3e  %5s  %5s" % (width, r.name, r.max_abs, r.max_rel,
                                                         fmt[r.top1], fmt[r.top5]))
    worst = max(r.max_abs for r in records)
    ok = within_tolerance(records, atol)
    failing = first_failing_output(records, atol)
    lines.append("%s: max |difference| %.3e %s atol %.1e over %d inputs%s%s" % (
        "PASS" if ok else "FAIL", worst, "<=" if ok else ">", atol,
        len({r.name for r in records}),
        " and %d outputs" % len(set(outputs)) if outputs else "",
        "; first failing output '%s'" % failing if failing else ""))
    return "\n".join(lines)


def _record_ok(r, atol):
    return r.max_abs <= atol and r.top1 is not False and r.top5 is not False


def within_tolerance(records, atol):
    """All differences within ``atol`` and every top-1/top-5 identical."""
    return all(_record_ok(r, atol) for r in records)


def first_failing_output(records, atol):
    """The first output (in the model's order) with an input beyond tolerance, or ``None``
    (also for a model with one output)."""
    return next((r.output for r in records if not _record_ok(r, atol)), None)


def checkpoint_head(net_params, meta):
    """``(include_top, classes, pooling)`` of a checkpoint."""
    weight = net_params.get("predictions_weight")
    if weight is not None:
        return True, int(weight.shape[0]), None
    return False, None, meta.pooling


def resolve_input_size(prefix, meta, input_size):
    """The requested size, which must be the one the checkpoint was built for."""
    built = meta.input_size(default=None) if meta else None
    if input_size is None:
        return tuple(built or (299, 299))
    try:
        spec = meta.own_model_spec if meta.is_own_model else None
        input_size = check_model_input(spec, tuple(input_size))
    except ValueError as exc:
        raise InputError("--input-shape %d %d: %s" % (tuple(input_size) + (exc,)))
    if built is not None and tuple(input_size) != tuple(built):
        raise InputError("--input-shape %d %d does not fit %s, built for %dx%d input (TF's "
                         "padding depends on the size); reconvert with keras2mxnet "
                         "--input-shape %d %d" % (tuple(input_size) + (prefix,) + tuple(built)
                                                  + tuple(input_size)))
    return tuple(input_size)


Parity = collections.namedtuple("Parity", "records layers details")


def run_parity(keras_path, prefix, images=(), random_count=0, seed=0, input_size=None,
               epoch=0, batch_size=8, per_layer=False):
    """Run both models on the same inputs and compare them; with ``per_layer``
    every intermediate output too."""
    meta = read_meta(prefix)
    meta.require_keras_shaped(prefix, "parity (a conversion against Keras; compare the "
                         "copy with fp32 by xception-predict --precision)")
    input_size = resolve_input_size(prefix, meta, input_size)
    if meta.is_own_model:
        return run_own_model_parity(keras_path, prefix, meta, images, random_count, seed,
                                   input_size, epoch, batch_size, per_layer)
    net, meta = load_network(prefix, epoch, output="logits", input_size=input_size)
    params = {name: p.data() for name, p in net.collect_params().items()}
    include_top, classes, pooling = checkpoint_head(params, meta)
    channels = meta.channels
    names, x = build_inputs(images, random_count, seed, input_size, channels=channels)
    keras_model = keras_side.load_keras_reference(keras_path, prefix, include_top, classes,
                                                  pooling, input_size, channels,
                                                  batchnorm=meta.batchnorm)
    records, layer_records = compare_both(
        keras_model, net, names, x, per_layer and (lambda: keras_side.xception_probe(keras_model)),
        prefix, epoch, input_size, batch_size)
    details = {"keras": keras_path, "mxnet": prefix, "epoch": epoch,
               "input_size": list(input_size), "include_top": include_top,
               "classes": classes, "pooling": pooling, "channels": channels}
    return Parity(records, layer_records, details)


def compare_both(keras_model, net, names, x, probe, prefix, epoch, input_size, batch_size,
                 output_names=None):
    """``(records, layer records or None)``: both models' outputs over ``x`` (each of
    ``output_names``, for a model with several) and, when ``probe() -> (pairs, keras_run)``
    is given, every paired layer."""
    keras_outs = as_outputs(keras_side.keras_predict(keras_model, x, batch_size, progress=True))
    mx_outs = as_outputs(run_batches(net, x, batch_size, progress=True, desc="mxnet"))
    if len(keras_outs) != len(mx_outs):
        raise InputError("%s has %d outputs, the Keras model %d" % (prefix, len(mx_outs),
                                                                    len(keras_outs)))
    output_names = output_names or [None]
    records = []
    for output, keras_out, mx_out in zip(output_names, keras_outs, mx_outs):
        if keras_out.shape != mx_out.shape:
            raise InputError("%s gives outputs of shape %s, the Keras model %s%s"
                             % (prefix, mx_out.shape[1:], keras_out.shape[1:],
                                " (output '%s')" % output if output else ""))
        records += compare_outputs(names, keras_out, mx_out, output)
    layer_records = None
    if probe:
        pairs, keras_run = probe()
        layer_records = compare_checkpoint_layers(pairs, keras_run, prefix, epoch, input_size,
                                                  x, batch_size)
    return records, layer_records


def as_outputs(out):
    """A model's outputs as a list (one array for a model with one output)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def compare_checkpoint_layers(pairs, keras_run, prefix, epoch, input_size, x, batch_size):
    """Per-layer records of the checkpoint against the Keras model, for
    ``pairs`` and ``keras_run`` as ``keras_side.xception_probe`` gives them."""
    outputs = [mx_name for _, _, mx_name in pairs]
    net, _ = load_network(prefix, epoch, output=outputs, input_size=input_size)

    def internals(batch):
        values = net(mx.nd.array(batch))
        return {name: v.asnumpy() for name, v in zip(outputs, values)}
    return layers.compare_layers(pairs, keras_run, internals, x, max(1, min(batch_size, 4)))


def run_own_model_parity(keras_path, prefix, meta, images, random_count, seed, input_size,
                        epoch, batch_size, per_layer):
    """``run_parity`` for an own model's checkpoint: the user's whole Keras model,
    both sides fed the checkpoint's input convention, outputs as the model
    gives them (after its last activation)."""
    if not os.path.isfile(keras_path):
        raise InputError("%s: %s" % (keras_path, "a folder; expected a Keras model file "
                                     "(.keras or .h5)" if os.path.isdir(keras_path)
                                     else "no such Keras model file"))
    spec = meta.own_model_spec
    file_model = read_file_own_model(keras_path, spec, prefix)
    raw = meta.takes_raw_pixels
    channels = meta.channels
    names, x = build_inputs(images, random_count, seed, input_size, raw, channels)
    keras_model, mixed = keras_side.as_converted(keras_side.load_own_model(keras_path),
                                               input_size)
    net, _ = load_network(prefix, epoch, input_size=input_size)
    records, layer_records = compare_both(
        keras_model, net, names, x,
        per_layer and (lambda: keras_side.own_model_probe(keras_model, file_model)),
        prefix, epoch, input_size, batch_size,
        [o["name"] for o in meta.outputs or []])
    details = {"keras": keras_path, "mxnet": prefix, "epoch": epoch,
               "input_size": list(input_size), "kind": "transfer", "channels": channels,
               "input_range": [0.0, 255.0] if raw else [-1.0, 1.0],
               "classes": meta.num_classes,
               "outputs": meta.outputs,
               "keras_policy": "float32 (the file's %s)" % mixed if mixed else "float32",
               "keras_mixed_precision": mixed}
    return Parity(records, layer_records, details)
