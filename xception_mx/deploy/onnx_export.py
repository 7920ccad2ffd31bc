"""``xception-export --format onnx``: the checkpoint as an ONNX model with a dynamic batch size
(MXNet's own exporter, ``mx.onnx.export_model``), checked by ONNX Runtime against MXNet on
the export's inputs before anything is written.

``NAME.onnx`` comes with ``NAME-report.json`` (the check) and, for a classifier with named
classes, ``NAME-labels.txt``.  The model's ``metadata_props`` say what its input is
(``INPUT_KEYS``: layout, size, channels, colour, scale), so it can be fed without this
package."""
import contextlib
import json
import os
import re
import tempfile
from unittest import mock

import numpy as np

from xception_mx.atomic import atomic_path, write_text
from xception_mx.errors import InputError, make_sure
from xception_mx.faults import alter_onnx_weight
from xception_mx.outputs import nearest_existing

# MXNet 1.9.1's exporter declares onnx's newest opset (22 with onnx 1.17: ONNX Runtime >= 1.20
# only) while its translations are written for opsets 12 and 13: it is asked for 13, which
# ONNX Runtime >= 1.7, TensorRT and OpenVINO read.
OPSET = 13
# |ONNX Runtime - MXNet| allowed on each output and logits: 1e-4, relative for values above 1
# (measured: 1.3e-6 on the demo's logits)
CHECK_ATOL = 1e-4
RANDOM_INPUTS = 3            # seeded inputs in the model's range, beside --check-images
UNKNOWN_OPERATOR = re.compile(r"No conversion function registered for op type (\S+?) yet")
REPORT_SUFFIX, LABELS_SUFFIX = "-report.json", "-labels.txt"
PINS = "pip install onnx==1.17.0 onnxruntime==1.32.0 (make setup-serving)"


def onnx_name(out):
    """``out`` without ``.onnx`` (the stem its report and labels are named after)."""
    make_sure(out.endswith(".onnx"), "-o %s: an ONNX model is a .onnx file", out)
    return out[:-len(".onnx")]


def companions(out):
    """``{"report": NAME-report.json, "labels": NAME-labels.txt}`` beside ``NAME.onnx``."""
    stem = onnx_name(out)
    return {"report": stem + REPORT_SUFFIX, "labels": stem + LABELS_SUFFIX}


def exported(symbol, params, channels, input_size, work):
    """The ``onnx.ModelProto`` MXNet's exporter makes of ``symbol``, batch size dynamic; an
    operator it cannot express is refused, named."""
    import onnx
    from mxnet import onnx as mx_onnx
    shape = (channels,) + tuple(input_size)
    try:
        with exporter_at_opset(OPSET):
            path = mx_onnx.export_model(symbol, params, in_shapes=[(1,) + shape],
                                        in_types=[np.float32],
                                        onnx_file_path=os.path.join(work, "model.onnx"),
                                        dynamic=True, dynamic_input_shapes=[(None,) + shape])
    except AttributeError as exc:
        found = UNKNOWN_OPERATOR.search(str(exc))
        if not found:
            raise
        raise InputError("MXNet's ONNX exporter cannot express the operator %s"
                         % found.group(1)) from None
    return onnx.load(path)


@contextlib.contextmanager
def exporter_at_opset(opset):
    """MXNet's exporter made to write ``opset``: it reads the opset from
    ``onnx.defs.onnx_opset_version()`` when called, and checks each graph against onnx's
    ``checker.DEFAULT_CONTEXT``, whose opset is onnx's newest (where ReduceMean's ``axes``, as
    MXNet writes it, is no attribute any more)."""
    from onnx import checker
    context = checker.DEFAULT_CONTEXT
    newest = context.opset_imports
    context.opset_imports = {"": opset}
    try:
        with mock.patch("onnx.defs.onnx_opset_version", return_value=opset):
            yield
    finally:
        context.opset_imports = newest


def tidied(model):
    """``model`` with its weights no longer listed as graph inputs (MXNet's exporter lists
    them, which keeps ONNX Runtime from folding them as constants) and without the
    initializers no node reads (ONNX Runtime warns of each); the data input stays, its first
    dimension (and each output's) named ``batch``, as tools show a dynamic one."""
    used = {name for node in model.graph.node for name in node.input}
    kept = [w for w in model.graph.initializer if w.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    weights = {w.name for w in kept}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_param = "batch"
    return model


INPUT_KEYS = ("layout", "color", "scale", "range")


def with_metadata(model, meta, input_size, names):
    """``model`` with what feeding it takes in ``metadata_props``: ``input`` (JSON: layout,
    size, channels, colour, scale, range, from the checkpoint's meta), ``classes`` (JSON list
    of names, for a classifier with named classes)."""
    given = meta.input_convention
    convention = {key: given[key] for key in INPUT_KEYS if key in given}
    convention.update(size=list(input_size), channels=meta.channels,
                      scale=given.get("scale", "x (raw pixels, 0-255)" if meta.takes_raw_pixels
                                      else "x / 127.5 - 1"))
    entries = {"producer": "xception-mx xception-export", "input": json.dumps(convention)}
    if names:
        entries["classes"] = json.dumps(names)
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model


def with_outputs(model, names):
    """A copy of ``model`` whose outputs are the tensors ``names``, in that order (for the
    check only); a name no node outputs is refused."""
    import onnx
    made = {name for node in model.graph.node for name in node.output}
    missing = [name for name in names if name not in made]
    make_sure(not missing, "the exported ONNX graph has no tensor %s to check", missing[:1])
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.output[:]
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return copy


def onnx_tensor(mxnet_output):
    """The ONNX tensor MXNet's exporter makes of an MXNet output (``X_output`` -> ``X``)."""
    return mxnet_output[:-len("_output")] if mxnet_output.endswith("_output") else mxnet_output


def compare(model, checked, inputs, reference):
    """Run ``model`` in ONNX Runtime on ``inputs``, one image at a time and all at once (the
    dynamic batch), for the tensors ``checked``, against MXNet's ``reference`` values of
    them: per tensor the largest |difference|, the largest |value|, the top-1 agreement and
    whether it is within ``CHECK_ATOL`` (times the largest |value| above 1)."""
    import onnxruntime
    session = onnxruntime.InferenceSession(with_outputs(model, checked).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    whole = session.run(names, {"data": inputs})
    singles = [session.run(names, {"data": inputs[i:i + 1]}) for i in range(len(inputs))]
    records = []
    for k, name in enumerate(names):
        expected = reference[k]
        for got in (whole[k], np.concatenate([s[k] for s in singles])):
            make_sure(got.shape == expected.shape, "ONNX Runtime's %s has shape %s, MXNet's %s",
                      name, got.shape, expected.shape)
        diff = max(float(np.abs(whole[k] - expected).max()),
                   float(np.abs(np.concatenate([s[k] for s in singles]) - expected).max()))
        top1 = (float(np.mean(whole[k].argmax(axis=1) == expected.argmax(axis=1)))
                if expected.ndim == 2 and expected.shape[1] > 1 else None)
        scale = max(1.0, float(np.abs(expected).max()))
        records.append({"tensor": name, "max_abs_difference": diff,
                        "max_abs_value": float(np.abs(expected).max()), "top1_agreement": top1,
                        "tolerance": CHECK_ATOL * scale, "passed": diff <= CHECK_ATOL * scale})
    return records


def check_report(records, input_names, batch_sizes):
    """The report written beside the model: the check's figures and whether it passed."""
    import onnx
    import onnxruntime
    worst = max(records, key=lambda r: r["max_abs_difference"] / r["tolerance"])
    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": OPSET,
            "inputs": input_names, "batch_sizes": batch_sizes, "tolerance": CHECK_ATOL,
            "worst": worst["tensor"], "max_abs_difference": worst["max_abs_difference"],
            "passed": all(r["passed"] for r in records), "tensors": records}


def write_outputs(out, model, report, names, force):
    """``NAME.onnx``, its report and labels, each written whole; stale labels of an earlier
    export are removed under ``force``."""
    paths = companions(out)
    try:
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as f:
                f.write(model.SerializeToString())
        write_text(paths["report"], json.dumps(report, indent=1) + "\n")
        if names:
            write_text(paths["labels"], "".join(n + "\n" for n in names))
        elif force and os.path.exists(paths["labels"]):
            os.unlink(paths["labels"])
    except OSError as exc:
        raise InputError("%s: cannot write the model (%s)" % (out, exc.strerror or exc))


def export_work_folder(out):
    """A temporary folder for the exporter's own file, on OUT's file system."""
    return tempfile.TemporaryDirectory(dir=nearest_existing(os.path.dirname(
        os.path.abspath(out))), prefix=".%s." % os.path.basename(out))


def check_inputs(meta, input_size, images, transform):
    """``(names, NCHW float32)``: ``images`` (files or folders) decoded as xception-predict
    decodes them, then ``RANDOM_INPUTS`` seeded inputs in the model's range."""
    from xception_mx.images.decode import image_files
    from xception_mx.serving.loading import checkpoint_images
    files = image_files(images) if images else []
    rng = np.random.RandomState(0)
    low, high = (0.0, 255.0) if meta.takes_raw_pixels else (-1.0, 1.0)
    noise = rng.uniform(low, high, (RANDOM_INPUTS, meta.channels) + tuple(input_size))
    parts = ([checkpoint_images(files, meta, transform)] if files else []) + [noise]
    names = [os.path.basename(str(f)) for f in files] + \
        ["random[%d]" % i for i in range(RANDOM_INPUTS)]
    return names, np.concatenate(parts).astype(np.float32)


def checked_tensors(symbol):
    """MXNet's outputs the check compares: the model's own, then each Dense layer's
    (``FullyConnected``): a head's logits, where a saturated softmax or sigmoid hides
    differences."""
    outputs = list(symbol.list_outputs())
    dense = ["%s_output" % node["name"] for node in json.loads(symbol.tojson())["nodes"]
             if node["op"] == "FullyConnected"]
    return outputs + [name for name in dense if name not in outputs]


def write_onnx(prefix, out, epoch=0, images=(), transform="keras", labels=None, force=False):
    """Export the checkpoint to ``out`` (``NAME.onnx``) with its report and labels, checked
    by ONNX Runtime first.  Returns the report; a check that failed writes nothing."""
    from xception_mx.checkpoint.reading import load_params, load_symbol, read_meta
    from xception_mx.serving.loading import load_network, run_batches
    onnx_name(out)
    meta = read_meta(prefix)
    input_size = tuple(meta.input_size())
    names = exported_names(prefix, meta, labels)
    symbol, (arg_params, aux_params) = load_symbol(prefix), load_params(prefix, epoch)
    tensors = checked_tensors(symbol)
    input_names, x = check_inputs(meta, input_size, images, transform)
    with export_work_folder(out) as work:
        try:
            model = exported(symbol, dict(arg_params, **aux_params), meta.channels,
                             input_size, work)
        except InputError as exc:
            raise InputError("%s: %s%s" % (prefix, exc, quantized_hint(meta))) from None
    model = alter_onnx_weight(with_metadata(tidied(model), meta, input_size, names))
    net, _ = load_network(prefix, epoch, output=tensors)
    reference = run_batches(net, x, batch_size=len(x))
    reference = reference if isinstance(reference, list) else [reference]
    records = compare(model, [onnx_tensor(t) for t in tensors], x, reference)
    report = check_report(records, input_names, [1, len(x)])
    if report["passed"]:
        write_outputs(out, model, report, names, force)
    return report


def quantized_hint(meta):
    if not meta.is_serving_copy:
        return ""
    return " (an optimized %s copy: export %s)" % (
        meta.precision, meta.source_checkpoint("the checkpoint it was made from"))


def exported_names(prefix, meta, labels):
    """The class names the export ships: a single-output classifier's (``--labels``,
    ``PREFIX-labels.txt``, or ImageNet's for 1000 classes); ``None`` for a feature extractor
    or a multi-output model."""
    from xception_mx.checkpoint.labels import class_names
    from xception_mx.deploy.staging import output_classes
    from xception_mx.serving.runtime import checkpoint_output_kind
    make_sure(not (labels and meta.outputs), "--labels: %s has several outputs, whose classes "
              "the checkpoint names", prefix)
    if meta.outputs or checkpoint_output_kind(meta) == "features":
        return None
    return class_names(prefix, output_classes(prefix, meta), labels)
