"""Sections 2 and 3: inference at each precision, xception-mx's fast paths side by side with
Keras/TF, ONNX Runtime and OpenVINO in the same alternating rounds, each row with its
deviation from Keras' logits on the photos; and the targets of issue 31 (the fastest peer of
the same precision, same run) stated met or missed."""
import os
import sys

import numpy as np

from common import (DEMO, GFLOP_PER_IMAGE, PEERS_PYTHON, PHOTOS, PREFIX, REPEATS,
                    SERVING_ENV, WEIGHTS, ceiling, rate_stats, repeated, table, workload)

PEERS_DIR = os.path.join(DEMO, "peers")
PHOTOS_NPY = os.path.join(PEERS_DIR, "photos.npy")
KERAS_LOGITS = os.path.join(PEERS_DIR, "keras-logits.npy")
BATCHES = ("1", "8", "32")
KERAS = "Keras/TF 2.17 (predict_on_batch)"
AUTO = ", xception-predict's auto here"


def prepare_peers():
    """The photos as every row takes them, Keras' logits on them, and the peers' models
    (converted once per weights file); the peers' versions."""
    if not os.path.exists(PEERS_PYTHON):
        sys.stderr.write("bench/run.py: %s is missing: `make bench-peers` makes the peers' "
                         "venv (ONNX Runtime, OpenVINO, tf2onnx)\n" % PEERS_PYTHON)
        sys.exit(2)
    os.makedirs(PEERS_DIR, exist_ok=True)
    workload("save_photos", calib=PHOTOS, out=PHOTOS_NPY)
    workload("keras_logits", weights=WEIGHTS, photos=PHOTOS_NPY, logits_out=KERAS_LOGITS)
    workload("peers.convert", weights=WEIGHTS, photos=PHOTOS_NPY, out=PEERS_DIR)
    return workload("peers.versions")


def with_logits(name, spec):
    """``spec`` (workload, kwargs[, env]) whose run also writes its logits on the photos."""
    workload_name, kwargs, *env = spec
    path = os.path.join(PEERS_DIR, "logits-%s.npy" % "".join(
        c if c.isalnum() else "-" for c in name.lower())[:80])
    return (workload_name, dict(kwargs, photos=PHOTOS_NPY, logits_out=path), *env), path


# The peers at each precision: (runtime, the precision it is asked for; OpenVINO's "default"
# is its own choice, bf16 on a CPU with AVX-512 BF16), and how the row's model was made.
PEERS = {"fp32": [("onnxruntime", "fp32"), ("openvino", "fp32")],
         "bf16": [("openvino", "default")],
         "int8": [("onnxruntime", "int8"), ("openvino", "int8")]}
RUNTIMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}
HOW = {("onnxruntime", "fp32"): "tf2onnx %(tf2onnx)s from the Keras model",
       ("openvino", "fp32"): "the ONNX model, INFERENCE_PRECISION_HINT=f32",
       ("openvino", "default"): "the ONNX model, the plugin's choice on this CPU",
       ("onnxruntime", "int8"): "static QDQ, per-channel, calibrated on the 5 photos",
       ("openvino", "int8"): "NNCF post-training quantization on the 5 photos"}


def _shown(precision, versions):
    return ("default (%s)" % versions["openvino_default"] if precision == "default"
            else precision)


def peer_label(runtime, precision, versions):
    """``ONNX Runtime fp32``, ``OpenVINO default (bf16)``...: a peer's column name."""
    return "%s %s" % (RUNTIMES[runtime], _shown(precision, versions))


def peer_runs(precision, versions):
    """``{row name: spec}`` of the peers at ``precision`` (fp32, bf16, int8)."""
    return {"%s %s %s (%s)" % (RUNTIMES[runtime], versions[runtime].split("-")[0],
                               _shown(asked, versions), HOW[runtime, asked] % versions):
            ("peers.infer", {"runtime": runtime, "precision": asked, "models": PEERS_DIR})
            for runtime, asked in PEERS[precision]}


def fidelity(logits_path):
    """Max |logit deviation| from Keras and top-1 / top-5 agreement on the photos."""
    from xception_mx.serving.fast import logits_agreement
    return logits_agreement(np.load(KERAS_LOGITS), np.load(logits_path))


def measure(runs):
    """Rounds of ``runs`` (``{name: spec}``), each but Keras' also writing its logits:
    ``{name: (results, fidelity or None)}``."""
    specs, paths = {}, {}
    for name, spec in runs.items():
        specs[name], paths[name] = (spec, None) if name == KERAS else with_logits(name, spec)
    results = repeated(specs)
    return {name: (results[name], fidelity(paths[name]) if paths[name] else None)
            for name in runs}


def rates_cell(rs, batch, keras):
    low, med, high = rate_stats(rs, batch)
    return "%.1f / %.1f / %.1f (%.2fx)" % (low, med, high, med / keras[batch])


def fidelity_cells(f):
    if f is None:
        return ["(the reference)", ""]
    return ["%.3g" % f["max_abs"], "%.0f%% / %.0f%%" % (100 * f["top1"], 100 * f["top5"])]


def medians(rs):
    return {b: rate_stats(rs, b)[1] for b in BATCHES}


def versus(ours_name, ours, peers, label, batches=BATCHES):
    """Lines: ``ours`` against the fastest of ``peers`` (``{name: results}``) at each batch."""
    lines = []
    for b in batches:
        best = max(peers, key=lambda n: rate_stats(peers[n], b)[1])
        ratio = rate_stats(ours, b)[1] / rate_stats(peers[best], b)[1]
        lines.append("- %s, batch %s: %s %.1f images/s against %s %.1f: **%.2fx, %s**" % (
            label, b, ours_name, rate_stats(ours, b)[1], best, rate_stats(peers[best], b)[1],
            ratio, "met" if ratio >= 1.0 else "missed"))
    return lines


def inference_section(peak, fused, versions):
    """Section 2; ``fused``: ``{name: spec}`` of the fused fp32 networks (one ends in AUTO)."""
    runs = dict({KERAS: ("infer_keras", {}),
                 "MXNet plain (imperative Gluon)": ("infer_mxnet", {"prefix": PREFIX,
                                                                    "mode": "plain"}),
                 "MXNet hybridized, static allocation": ("infer_mxnet", {"prefix": PREFIX,
                                                                         "mode": "static"})},
                **fused, **peer_runs("fp32", versions))
    measured = measure(runs)
    keras = medians(measured[KERAS][0])
    rows = []
    for name, (rs, f) in measured.items():
        rows.append([name] + [rates_cell(rs, b, keras) for b in BATCHES] + fidelity_cells(f)
                    + ["%.0f%%" % (100 * rate_stats(rs, "8")[1] * GFLOP_PER_IMAGE / peak),
                       "%.0f" % max(r["peak_rss_mb"] for r in rs)])
    auto = next(n for n in fused if n.endswith(AUTO))
    peers = {n: measured[n][0] for n in peer_runs("fp32", versions)}
    text = ("Images/s at 299x299, min / median / max of %d alternating rounds (each network "
            "alone in its process), ratio = median / Keras' median at the same batch. The peers "
            "run the same Keras model (the demo weights), converted by tf2onnx; their input is "
            "NHWC as the model's, MXNet's NCHW. The oneDNN-fused rows run on MXNet's "
            "NaiveEngine, as xception-predict does; the plain and hybridized rows on its "
            "default engine. Deviation and agreement: each network's logits "
            "on the 5 photos against Keras' own (Keras 3), top-1 / ordered top-5. Share of "
            "peak: batch-8 median x %.1f GFLOP per image / %.0f GFLOP/s (the machine's "
            "practical peak: the faster of numpy sgemm and MXNet's oneDNN inner product on "
            "2048x2048 matrices). Peak RSS: the whole process (batch 32 is its largest). "
            "Keras' share of peak sets the ceiling: no fp32 network can run faster than %.2fx "
            "Keras at batch 8 here.\n\nTargets (issue 31), against the fastest fp32 peer of "
            "this run:\n\n%s\n\n"
            % (REPEATS, GFLOP_PER_IMAGE, peak, ceiling(peak, keras["8"]),
               "\n".join(versus("xception-mx fp32 (auto)", measured[auto][0], peers, "fp32",
                                ("8", "1", "32")))))
    return text + table(["network", "batch 1", "batch 8", "batch 32", "max |dev| vs Keras",
                         "top-1 / top-5 vs Keras", "share of peak (b8)", "peak RSS MB"],
                        rows), keras


def precision_section(keras, int8_peak, caps_of, versions, conv_text):
    """Section 3: bf16 and int8 (``caps_of``: ``{precision: [(label, DNNL_MAX_CPU_ISA)]}``,
    the last of each xception-predict's auto) against the peers at each batch."""
    runs, ours = {}, {}
    for precision, caps in caps_of.items():
        for label, isa in caps:
            name = "MXNet %s%s, %s" % (precision, {"bf16": " (BatchNorm folded, AMP, oneDNN)",
                                                  "int8": " (oneDNN, naive calibration on the "
                                                          "5 photos)"}[precision], label)
            runs[name] = ("infer_mxnet", {"prefix": PREFIX, "mode": precision,
                                          "calib": PHOTOS if precision == "int8" else None},
                          dict(SERVING_ENV, DNNL_MAX_CPU_ISA=isa))
            ours[precision] = name
        runs.update(peer_runs(precision, versions))
    measured = measure(runs)
    rows = []
    for name, (rs, f) in measured.items():
        rows.append([name] + [rates_cell(rs, b, keras) for b in BATCHES] +
                    ["%.0f%%" % (100 * rate_stats(rs, "8")[1] * GFLOP_PER_IMAGE / int8_peak)]
                    + fidelity_cells(f) + ["%.0f" % max(r["peak_rss_mb"] for r in rs)])
    lines = []
    for precision, label in (("bf16", "bf16 against OpenVINO's default (bf16)"),
                             ("int8", "int8 against the faster int8 peer")):
        peers = {n: measured[n][0] for n in peer_runs(precision, versions)}
        lines += versus("xception-mx %s (auto)" % precision, measured[ours[precision]][0],
                        peers, label, ("8", "1", "32"))
    kept = measured[ours["int8"]][1]["top1"]
    lines.append("- int8 keeps Keras' top-1 on the photos: %.0f%% (%s)" % (
        100 * kept, "met" if kept == 1.0 else "missed"))
    text = ("Images/s at 299x299, min / median / max of %d alternating rounds, ratio = median "
            "/ Keras' fp32 median at the same batch (section 2). xception-mx's rows run as "
            "xception-predict runs them (MXNet's NaiveEngine, oneDNN's ceiling as labelled); "
            "the peers convert the same Keras model as in section 2. Deviation and agreement: "
            "logits on the 5 photos against Keras' own. The demo model has random weights, so "
            "its logits are close together: a hard case for top-5 agreement. Share of int8 "
            "peak: batch-8 median x %.1f G operations per image / %.0f G int8 operations/s "
            "(the machine's practical int8 peak without AMX: oneDNN's int8 inner product on "
            "2048x2048 matrices); the ceiling for int8 without AMX here is %.2fx Keras' fp32 "
            "batch 8.\n\nTargets (issue 31), same run:\n\n%s\n\n"
            % (REPEATS, GFLOP_PER_IMAGE, int8_peak, ceiling(int8_peak, keras["8"]),
               "\n".join(lines)))
    return text + conv_text + table(
        ["network", "batch 1", "batch 8", "batch 32", "share of int8 peak (b8)",
         "max |dev| vs Keras", "top-1 / top-5 vs Keras", "peak RSS MB"], rows)


def keras_rates():
    """Keras' fp32 medians at each batch, when section 2 did not run."""
    return medians(repeated({"k": ("infer_keras", {})})["k"])

