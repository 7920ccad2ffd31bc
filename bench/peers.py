"""The runtimes a user could pick instead of xception-mx, run in their own venv
(``make bench-peers``: ONNX Runtime, OpenVINO + NNCF, tf2onnx; a newer numpy than
MXNet's): ``.venv-peers/bin/python bench/peers.py NAME JSON`` prints one JSON line, as
``bench/workloads.py`` does.

- ``convert``: the demo Keras weights file, as tf-keras loads it (logits), to ONNX with
  tf2onnx; ONNX Runtime's static int8 (QDQ, per-channel) and OpenVINO's int8 (NNCF
  post-training quantization), both calibrated on the photos MXNet's int8 calibrates on.
- ``infer``: one runtime at one precision, images/s at each batch, and its logits on the
  photos.
- ``profile``: one forward's time per layer, from OpenVINO's ``PERF_COUNT`` or ONNX
  Runtime's profiler, grouped by Xception flow and kind of layer (``bench/layers.py``), and
  the forward's wall time.

No xception_mx import: MXNet does not load beside this venv's numpy.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import layers  # noqa: E402
from timing import images_per_s  # noqa: E402

SIZE = 299
ONNX_FP32, ONNX_INT8, OPENVINO_INT8 = "xception.onnx", "xception_int8_qdq.onnx", \
    "xception_int8_nncf.xml"

INPUT = "input"     # the ONNX model's input, named in the signature tf2onnx converts


def _nhwc(photos_npy):
    return np.ascontiguousarray(np.load(photos_npy).transpose(0, 2, 3, 1))


def convert(weights, photos, out):
    """Write the ONNX model and the two int8 models under ``out`` from the Keras ``weights``;
    kept when already there and newer than ``weights``."""
    os.makedirs(out, exist_ok=True)
    targets = [os.path.join(out, name) for name in (ONNX_FP32, ONNX_INT8, OPENVINO_INT8)]
    if all(os.path.exists(t) and os.path.getmtime(t) >= os.path.getmtime(weights)
           for t in targets):
        return {"converted": False}
    calibration = _nhwc(photos)
    started = time.perf_counter()
    _to_onnx(weights, targets[0])
    _onnxruntime_int8(targets[0], calibration, targets[1])
    _openvino_int8(targets[0], calibration, targets[2])
    return {"converted": True, "seconds": time.perf_counter() - started}


def _to_onnx(weights, path):
    import tensorflow as tf
    import tf2onnx
    import tf_keras
    model = tf_keras.applications.Xception(weights=None, classifier_activation=None,
                                           input_shape=(SIZE, SIZE, 3))
    model.load_weights(weights)
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name=INPUT),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=path)


def _onnxruntime_int8(fp32_path, calibration, path):
    """ONNX Runtime's static quantization as its docs describe it for CNNs: the model
    pre-processed (shape inference, optimization), QDQ format, per-channel weights."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    prepared = path + ".prepared.onnx"
    quant_pre_process(fp32_path, prepared)

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{INPUT: x[None]} for x in calibration])

        def get_next(self):
            return next(self.items, None)
    quantize_static(prepared, path, Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    os.remove(prepared)


def _openvino_int8(fp32_path, calibration, path):
    import nncf
    import openvino as ov
    model = ov.Core().read_model(fp32_path)
    quantized = nncf.quantize(model, nncf.Dataset([x[None] for x in calibration]),
                              subset_size=len(calibration))
    ov.save_model(quantized, path)


def session(runtime, precision, models, profile=False):
    """``run(x_nhwc) -> logits`` of ``runtime`` (onnxruntime, openvino) at ``precision`` (fp32,
    int8, or OpenVINO's ``default``), and a function that returns the
    runtime's per-layer records (``[(name, op, ms)]`` per run) after ``profile``d runs."""
    if runtime == "onnxruntime":
        return _onnxruntime(os.path.join(models, ONNX_INT8 if precision == "int8"
                                         else ONNX_FP32), profile)
    path = os.path.join(models, OPENVINO_INT8 if precision == "int8" else ONNX_FP32)
    return _openvino(path, precision, profile)


def _onnxruntime(path, profile):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.enable_profiling = profile
    # beside the models, not in the working directory; read once, then removed
    options.profile_file_prefix = os.path.join(os.path.dirname(path), "onnxruntime_profile")
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def records():
        """Every profiled run's records (the profile is written at the end)."""
        written = sess.end_profiling()
        with open(written) as f:
            found = layers.onnxruntime_records(json.load(f))
        os.remove(written)
        return found
    return (lambda x: sess.run(None, {name: x})[0]), records


def _openvino(path, precision, profile):
    import openvino as ov
    config = {"INFERENCE_PRECISION_HINT": "f32"} if precision == "fp32" else {}
    if profile:
        config["PERF_COUNT"] = True
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()

    def run(x):
        return request.infer({0: x})[0]

    def records():
        """The last run's records (OpenVINO keeps no more)."""
        return [layers.openvino_records(request.get_profiling_info())]
    return run, records


def infer(runtime, precision, models, photos=None, batches=(1, 8, 32), iterations=32,
          logits_out=None):
    """Images/s of one row at each batch (random NHWC input, two warm-ups, then at least
    ``iterations`` images), and its logits on the photos, saved to ``logits_out``."""
    run, _ = session(runtime, precision, models)
    rates = images_per_s(run, batches, lambda batch: (batch, SIZE, SIZE, 3), iterations)
    if logits_out:
        np.save(logits_out, np.concatenate([run(x[None]) for x in _nhwc(photos)]))
    return {"images_per_s": rates, "precision": _effective_precision(runtime, precision)}


def _effective_precision(runtime, precision):
    """What OpenVINO's CPU plugin chose for ``default`` (its INFERENCE_PRECISION_HINT)."""
    if runtime != "openvino" or precision != "default":
        return precision
    import openvino as ov
    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()


def profile(runtime, precision, models, batch=8, runs=3):
    """Milliseconds per (flow, kind) in one forward: the median over ``runs`` profiled
    forwards after two warm-ups."""
    run, records = session(runtime, precision, models, profile=True)
    x = np.random.RandomState(0).uniform(-1, 1, (batch, SIZE, SIZE, 3)).astype(np.float32)
    run(x)
    run(x)
    measured, walls = [], []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        walls.append(1000 * (time.perf_counter() - start))
        measured += records()[-1:] if runtime == "openvino" else []
    measured = measured or records()[-runs:]
    return {"groups": layers.grouped([layers.by_names(r) for r in measured]),
            "wall_ms": statistics.median(walls)}


def versions():
    import onnxruntime
    import openvino
    import tf2onnx
    return {"onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__,
            "tf2onnx": tf2onnx.__version__, "numpy": np.__version__,
            "openvino_default": _effective_precision("openvino", "default")}


WORKLOADS = {"convert": convert, "infer": infer, "profile": profile, "versions": versions}

if __name__ == "__main__":
    result = WORKLOADS[sys.argv[1]](**(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}))
    import resource
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result))
