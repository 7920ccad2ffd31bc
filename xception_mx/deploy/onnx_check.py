"""The check of ``xception-export --format onnx``: ONNX Runtime runs the exported model against
MXNet's checkpoint on the export's inputs, one image at a time and several at once (the
dynamic batch), on each output and each Dense layer's output; the figures become the
report written beside the model."""
import json
import os

import numpy as np

from xception_mx.errors import make_sure

# |ONNX Runtime - MXNet| allowed on each output and logits: 1e-4, relative for values above 1
# (measured: 1.3e-6 on the demo's logits)
CHECK_ATOL = 1e-4
RANDOM_INPUTS = 3            # seeded inputs in the model's range, beside --check-images
CHECK_BATCH = 8              # the batch of several: a folder of images is run 8 at a time


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


def onnx_tensor(mxnet_output):
    """The ONNX tensor MXNet's exporter makes of an MXNet output (``X_output`` -> ``X``)."""
    return mxnet_output[:-len("_output")] if mxnet_output.endswith("_output") else mxnet_output


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


def mxnet_reference(prefix, epoch, tensors, x):
    """MXNet's values of ``tensors`` (``checked_tensors``) for ``x``: a list, in order."""
    from xception_mx.serving.loading import load_network, run_batches
    net, _ = load_network(prefix, epoch, output=tensors)
    reference = run_batches(net, x, batch_size=min(len(x), CHECK_BATCH))
    return reference if isinstance(reference, list) else [reference]


def compare(model, tensors, inputs, reference):
    """Run ``model`` in ONNX Runtime on ``inputs``, one image at a time and ``CHECK_BATCH`` at
    once, for the MXNet ``tensors``, against MXNet's ``reference`` values of them: per
    tensor the largest |difference|, the largest |value|, the top-1 agreement and whether it
    is within ``CHECK_ATOL`` (times the largest |value| above 1)."""
    import onnxruntime
    names = [onnx_tensor(t) for t in tensors]
    session = onnxruntime.InferenceSession(with_outputs(model, names).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    runs = {size: [session.run(names, {"data": inputs[i:i + size]})
                   for i in range(0, len(inputs), size)]
            for size in sorted({1, min(len(inputs), CHECK_BATCH)})}
    records = []
    for k, name in enumerate(names):
        expected = reference[k]
        got = [np.concatenate([part[k] for part in parts]) for parts in runs.values()]
        for values in got:
            make_sure(values.shape == expected.shape, "ONNX Runtime's %s has shape %s, "
                      "MXNet's %s", name, values.shape, expected.shape)
        diff = max(float(np.abs(values - expected).max()) for values in got)
        top1 = (float(np.mean(got[-1].argmax(axis=1) == expected.argmax(axis=1)))
                if expected.ndim == 2 and expected.shape[1] > 1 else None)
        largest = float(np.abs(expected).max())
        tolerance = CHECK_ATOL * max(1.0, largest)
        records.append({"tensor": name, "max_abs_difference": diff, "max_abs_value": largest,
                        "top1_agreement": top1, "tolerance": tolerance,
                        "passed": diff <= tolerance})
    return records, sorted(runs)


def check_report(records, input_names, batch_sizes, opset):
    """The report written beside the model: the check's figures and whether it passed."""
    import onnx
    import onnxruntime
    worst = max(records, key=lambda r: r["max_abs_difference"] / r["tolerance"])
    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": opset,
            "inputs": input_names, "batch_sizes": batch_sizes, "tolerance": CHECK_ATOL,
            "worst": worst["tensor"], "max_abs_difference": worst["max_abs_difference"],
            "passed": all(r["passed"] for r in records), "tensors": records}
