"""``xception-export --format onnx``: the checkpoint as an ONNX model with a dynamic batch size
(MXNet's own exporter, ``mx.onnx.export_model``), checked by ONNX Runtime against MXNet on
the export's inputs before anything is written (``onnx_check``).

``NAME.onnx`` comes with ``NAME-report.json`` (the check) and, for a classifier with named
classes, ``NAME-labels.txt``.  The model's ``metadata_props`` say what its input is
(``INPUT_KEYS``: layout, size, channels, colour, scale) and what it outputs, so it can be fed
and read without this package."""
import contextlib
import json
import os
import re
from unittest import mock

import numpy as np

from xception_mx.atomic import file_mode
from xception_mx.checkpoint.labels import labels_path
from xception_mx.deploy.onnx_check import (check_inputs, check_report, checked_tensors, compare,
                                           mxnet_reference)
from xception_mx.deploy.staging import work_folder
from xception_mx.errors import InputError, make_sure
from xception_mx.faults import alter_onnx_weight

# MXNet 1.9.1's exporter declares onnx's newest opset (22 with onnx 1.17: ONNX Runtime >= 1.20
# only) while its translations are written for opsets 12 and 13: it is asked for 13, which
# ONNX Runtime >= 1.7, TensorRT and OpenVINO read.
OPSET = 13
IR_VERSION = 7               # what goes with opset 13 (onnx 1.17 writes 10: ORT >= 1.18 only)
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


def check_outputs(out, prefix, force, names):
    """Refuse, before any work, a companion that exists (without ``force``), or labels to
    write (``names``) where the checkpoint's own are (``-o PREFIX.onnx``)."""
    paths = companions(out)
    for path in paths.values():
        make_sure(force or not os.path.exists(path), "%s: already exists; pass --force to "
                  "overwrite it", path)
    make_sure(not names or os.path.abspath(paths["labels"]) !=
              os.path.abspath(labels_path(prefix)), "-o %s: its labels would overwrite the "
              "checkpoint's own %s: name the model otherwise", out, paths["labels"])


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
    except (NotImplementedError, ValueError, onnx.checker.ValidationError) as exc:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise InputError("MXNet's ONNX exporter cannot translate it (%s)" % text) from None
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
    dimension (and each output's) named ``batch``, as tools show a dynamic one; the IR version
    opset 13's (``IR_VERSION``)."""
    model.ir_version = IR_VERSION
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


def output_meaning(meta):
    """What the model's output is, in words: probabilities, logits, scores, features, one unit
    of a binary classifier, or several outputs."""
    from xception_mx.serving.runtime import checkpoint_output_kind, is_binary
    if meta.outputs:
        return "several outputs, named as the model's"
    kind = checkpoint_output_kind(meta) if meta.is_own_model else (
        ("probabilities" if meta.classifier_activation == "softmax" else "logits")
        if meta.include_top else "features")
    if is_binary(meta):
        return ("one unit: the %s of the second class of classes (the first: 1 - its "
                "probability)" % ("logit" if kind == "logits" else "sigmoid probability"))
    return kind


def with_metadata(model, meta, input_size, names):
    """``model`` with what feeding it takes in ``metadata_props``: ``input`` (JSON: layout,
    size, channels, colour, scale, range, from the checkpoint's meta), ``output`` (what it
    means, ``output_meaning``), ``classes`` (JSON list of names, for a classifier with named
    classes)."""
    given = meta.input_convention
    convention = {key: given[key] for key in INPUT_KEYS if key in given}
    convention.update(size=list(input_size), channels=meta.channels,
                      scale=given.get("scale", "x (raw pixels, 0-255)" if meta.takes_raw_pixels
                                      else "x / 127.5 - 1"))
    entries = {"producer": "xception-mx xception-export", "input": json.dumps(convention),
               "output": output_meaning(meta)}
    if names:
        entries["classes"] = json.dumps(names)
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model


def write_outputs(out, model, report, names, force):
    """``NAME.onnx``, its report and labels, written as a set: all three into a temporary
    folder first, then moved into place, the model last; stale labels of an earlier export
    are removed under ``force``."""
    paths = companions(out)
    texts = {"report": json.dumps(report, indent=1) + "\n",
             "labels": "".join(n + "\n" for n in names) if names else None}
    try:
        with work_folder(out) as work:
            for key, text in texts.items():
                if text is not None:
                    with open(os.path.join(work, key), "w") as f:
                        f.write(text)
            with open(os.path.join(work, "model"), "wb") as f:
                f.write(model.SerializeToString())
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            for key, path in list(paths.items()) + [("model", out)]:
                if texts.get(key, "") is not None:
                    os.chmod(os.path.join(work, key), file_mode())
                    os.replace(os.path.join(work, key), path)
            if names is None and force and os.path.exists(paths["labels"]):
                os.unlink(paths["labels"])
    except OSError as exc:
        raise InputError("%s: cannot write the model (%s)" % (out, exc.strerror or exc))


def write_onnx(prefix, out, epoch=0, images=(), transform="keras", labels=None, force=False):
    """Export the checkpoint to ``out`` (``NAME.onnx``) with its report and labels, checked
    by ONNX Runtime first.  Returns the report; a check that failed writes nothing."""
    from xception_mx.checkpoint.reading import load_params, load_symbol, read_meta
    meta = read_meta(prefix)
    input_size = tuple(meta.input_size())
    names = exported_names(prefix, meta, labels)
    check_outputs(out, prefix, force, names)
    symbol, (arg_params, aux_params) = load_symbol(prefix), load_params(prefix, epoch)
    input_names, x = check_inputs(meta, input_size, images, transform)
    with work_folder(out) as work:
        try:
            model = exported(symbol, dict(arg_params, **aux_params), meta.channels,
                             input_size, work)
        except InputError as exc:
            raise InputError("%s: %s%s" % (prefix, exc, quantized_hint(meta))) from None
    model = alter_onnx_weight(with_metadata(tidied(model), meta, input_size, names))
    tensors = checked_tensors(symbol)
    records, batch_sizes = compare(model, tensors, x, mxnet_reference(prefix, epoch, tensors, x))
    report = check_report(records, input_names, batch_sizes, OPSET)
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
    from xception_mx.deploy.staging import output_classes, refuse_labels_of_several_outputs
    from xception_mx.serving.runtime import checkpoint_output_kind
    refuse_labels_of_several_outputs(prefix, meta, labels)
    features = not meta.outputs and checkpoint_output_kind(meta) == "features"
    make_sure(not (labels and features), "--labels: %s is a feature extractor: it has no "
              "classes to name", prefix)
    if meta.outputs or features:
        return None
    return class_names(prefix, output_classes(prefix, meta), labels)
