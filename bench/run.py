"""Run every benchmark and rewrite BENCHMARKS.md (``make bench``).

Each measurement runs in a fresh process (``bench/workloads.py``), the two
frameworks alternating, several repetitions; tables give min and median and
the ratio to Keras/TF measured in the same run.
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_convert  # noqa: E402
from common import ROOT, machine, table  # noqa: E402

DEMO = os.path.join(ROOT, "demo")
WEIGHTS = os.path.join(DEMO, "xception_seed0.h5")
PREFIX = os.path.join(DEMO, "xception")
PHOTOS = os.path.join(ROOT, "tests", "data")
GFLOP_PER_IMAGE = 2 * 8.4     # Xception: about 8.4 G multiply-adds per 299x299 image
DEPTHWISE_SHAPES = [(64, 147), (128, 147), (128, 74), (256, 74), (256, 37), (728, 37),
                    (728, 19), (1024, 19), (1024, 10), (1536, 10)]
REPEATS = 2


def workload(name, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "workloads.py"), name,
                             json.dumps(kwargs)], capture_output=True, text=True, env=env,
                            cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (name, result.stderr[-3000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def repeated(runs):
    """``{name: [result, ...]}`` over REPEATS alternating rounds."""
    results = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, (workload_name, kwargs) in runs.items():
            results[name].append(workload(workload_name, **kwargs))
    return results


def rate_stats(results, key):
    values = [r["images_per_s"][key] if isinstance(r["images_per_s"], dict)
              else r["images_per_s"] for r in results]
    return min(values), statistics.median(values)


def inference_section(peak):
    runs = {"Keras/TF 2.17 (predict_on_batch)": ("infer_keras", {}),
            "MXNet plain (imperative Gluon)": ("infer_mxnet", {"prefix": PREFIX,
                                                               "mode": "plain"}),
            "MXNet hybridized, static allocation": ("infer_mxnet", {"prefix": PREFIX,
                                                                    "mode": "static"}),
            "MXNet oneDNN-fused (optimize_for)": ("infer_mxnet", {"prefix": PREFIX,
                                                                  "mode": "fused"})}
    results = repeated(runs)
    keras = {b: rate_stats(results["Keras/TF 2.17 (predict_on_batch)"], b)[1]
             for b in ("1", "8", "32")}
    rows = []
    for name, rs in results.items():
        row = [name]
        for b in ("1", "8", "32"):
            low, med = rate_stats(rs, b)
            row.append("%.1f / %.1f (%.2fx)" % (low, med, med / keras[b]))
        row.append("%.0f%%" % (100 * rate_stats(rs, "8")[1] * GFLOP_PER_IMAGE / peak))
        row.append("%.0f" % max(r["peak_rss_mb"] for r in rs))
        rows.append(row)
    text = ("Images/s at 299x299, min / median of %d runs, ratio = median / Keras' median at "
            "the same batch. Share of peak: batch-8 median x %.1f GFLOP per image / %.0f "
            "GFLOP/s (the machine's practical peak: the faster of numpy sgemm and MXNet's oneDNN "
            "inner product on 2048x2048 matrices). Peak RSS: the whole process "
            "(batch 32 is its largest).\n\n" % (REPEATS, GFLOP_PER_IMAGE, peak))
    return text + table(["network", "batch 1", "batch 8", "batch 32", "share of peak (b8)",
                         "peak RSS MB"], rows), keras


def precision_section(keras):
    runs = {"MXNet bf16 (AMP, oneDNN)": ("infer_mxnet", {"prefix": PREFIX, "mode": "bf16",
                                                         "batches": [8]}),
            "MXNet int8 (oneDNN, naive calibration on the 5 photos)": (
                "infer_mxnet", {"prefix": PREFIX, "mode": "int8", "batches": [8],
                                "calib": PHOTOS})}
    results = repeated(runs)
    fid = workload("fidelity", prefix=PREFIX, calib=PHOTOS)
    rows = []
    for (name, rs), precision in zip(results.items(), ("bf16", "int8")):
        low, med = rate_stats(rs, "8")
        f = fid[precision]
        rows.append([name, "%.1f / %.1f" % (low, med), "%.2fx" % (med / keras["8"]),
                     "%.3g" % f["photos"]["max_abs"], "%.0f%% / %.0f%%" % (
                         100 * f["photos"]["top1"], 100 * f["photos"]["top5"]),
                     "%.3g" % f["random"]["max_abs"], "%.0f%% / %.0f%%" % (
                         100 * f["random"]["top1"], 100 * f["random"]["top5"])])
    text = ("Batch 8, 299x299; fidelity against the fp32 checkpoint (logits) on the 5 sample "
            "photos and 8 random inputs. The demo model has random weights, so its logits are "
            "close together: a hard case for top-5 agreement.\n\n")
    return text + table(["network", "images/s min / median", "vs Keras",
                         "max |dev| photos", "top-1 / top-5 photos", "max |dev| random",
                         "top-1 / top-5 random"], rows)


def training_section():
    runs = {"MXNet Gluon (hybridized, SGD momentum)": ("train_mxnet", {}),
            "Keras fit": ("train_keras", {}),
            "Keras train_on_batch": ("train_keras_on_batch", {})}
    results = repeated(runs)
    keras = rate_stats(results["Keras train_on_batch"], None)[1]
    rows = []
    for name, rs in results.items():
        low, med = rate_stats(rs, None)
        rows.append([name, "%.2f / %.2f" % (low, med), "%.2fx" % (med / keras),
                     "%.0f" % max(r["peak_rss_mb"] for r in rs)])
    text = ("Training step, batch 8, 299x299, 1000 classes, images/s min / median of %d runs; "
            "ratio to Keras train_on_batch.\n\n" % REPEATS)
    return text + table(["framework", "images/s", "vs Keras train_on_batch", "peak RSS MB"],
                        rows), results


def depthwise_section():
    shapes = [list(s) for s in DEPTHWISE_SHAPES]
    mxnet = workload("depthwise", framework="mxnet", shapes=shapes)
    tf = workload("depthwise", framework="tf", shapes=shapes)
    rows = [["%d x %dx%d" % (c, s, s), "%.2f" % mxnet["%dx%d" % (c, s)],
             "%.2f" % tf["%dx%d" % (c, s)], "%.2fx" % (tf["%dx%d" % (c, s)]
                                                       / mxnet["%dx%d" % (c, s)])]
            for c, s in DEPTHWISE_SHAPES]
    text = ("One 3x3 depthwise convolution, forward, batch 8, ms per call: MXNet "
            "`Convolution(num_group=C)` vs TF `DepthwiseConv2D` (tf.function); speed ratio > 1: "
            "MXNet faster.\n\n")
    return text + table(["channels x size", "MXNet ms", "TF ms", "MXNet speed vs TF"], rows)


def main():
    started = time.time()
    if not os.path.exists(WEIGHTS):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_keras_reference.py"),
                        "-o", WEIGHTS], check=True)
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "keras2mxnet"), WEIGHTS, "-o",
                    PREFIX, "--force"], check=True, capture_output=True)
    peak = workload("peak_gflops")["gflops"]
    sections = [("1. Conversion", bench_convert.run(WEIGHTS)[0]),
                ("1b. Conversion of a transfer model", bench_convert.run_transfer(DEMO)[0])]
    inference, keras = inference_section(peak)
    sections.append(("2. Inference, fp32", inference))
    sections.append(("3. Reduced precision on CPU", precision_section(keras)))
    training, _ = training_section()
    sections.append(("4. Training step", training))
    sections.append(("5. Depthwise convolution micro-benchmark", depthwise_section()))
    text = ["# Benchmarks", "",
            "Written by `make bench` (`bench/run.py`) on %s in %.0f s." % (
                datetime.date.today(), time.time() - started), "",
            "Machine: " + machine(), "",
            "Memory (benchmark 6) is the peak RSS column of the inference and training tables.",
            ""]
    for title, body in sections:
        text += ["## " + title, "", body, ""]
    notes = os.path.join(ROOT, "bench", "NOTES.md")
    if os.path.exists(notes):
        text += [open(notes).read()]
    with open(os.path.join(ROOT, "BENCHMARKS.md.tmp"), "w") as f:
        f.write("\n".join(text))
    os.replace(os.path.join(ROOT, "BENCHMARKS.md.tmp"), os.path.join(ROOT, "BENCHMARKS.md"))
    print("\n".join(text))


if __name__ == "__main__":
    main()
