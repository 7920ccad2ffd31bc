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
REPEATS = 3


def workload(name, env=None, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "workloads.py"), name,
                             json.dumps(kwargs)], capture_output=True, text=True, env=env,
                            cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (name, result.stderr[-3000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def repeated(runs):
    """``{name: [result, ...]}`` over REPEATS alternating rounds; ``runs``: ``{name:
    (workload, kwargs[, environment])}``."""
    results = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, (workload_name, kwargs, *env) in runs.items():
            results[name].append(workload(workload_name, *env, **kwargs))
    return results


def rate_stats(results, key):
    values = [r["images_per_s"][key] if isinstance(r["images_per_s"], dict)
              else r["images_per_s"] for r in results]
    return min(values), statistics.median(values)


# The fused fp32 networks: (channels padded, oneDNN ISA cap).  xception-predict's auto picks one.
FUSED = [(False, None), (True, None), (False, "AVX2"), (True, "AVX512_MIC")]


def fused_runs():
    from xception_mx.cpu import isa_cap_helps_here
    from xception_mx.model.padding import resolve_padding
    auto = resolve_padding("auto")
    auto = (auto, isa_cap_helps_here("fp32", auto))
    runs = {}
    for padded, cap in FUSED:
        name = "MXNet oneDNN-fused, %s (--channel-padding %s --onednn-isa %s)%s" % (
            "padded to 736" if padded else "728 channels", "on" if padded else "off",
            cap.lower() if cap else "all",
            ", xception-predict's auto here" if (padded, cap) == auto else "")
        runs[name] = ("infer_mxnet", {"prefix": PREFIX, "mode": "fused" if padded
                                      else "fused-unpadded"}, {"DNNL_MAX_CPU_ISA": cap or "ALL"})
    return runs


def ceiling(peak_ops, keras_rate):
    """The best ratio to Keras any network can reach on this machine: the practical peak over
    Keras' rate, both in operations per second."""
    return peak_ops / (keras_rate * GFLOP_PER_IMAGE)


def inference_section(peak):
    runs = dict({"Keras/TF 2.17 (predict_on_batch)": ("infer_keras", {}),
                 "MXNet plain (imperative Gluon)": ("infer_mxnet", {"prefix": PREFIX,
                                                                    "mode": "plain"}),
                 "MXNet hybridized, static allocation": ("infer_mxnet", {"prefix": PREFIX,
                                                                         "mode": "static"})},
                **fused_runs())
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
            "(batch 32 is its largest). Keras' share of peak sets the ceiling: no fp32 "
            "network can run faster than %.2fx Keras at batch 8 here.\n\n"
            % (REPEATS, GFLOP_PER_IMAGE, peak, ceiling(peak, keras["8"])))
    return text + table(["network", "batch 1", "batch 8", "batch 32", "share of peak (b8)",
                         "peak RSS MB"], rows), keras


# (column, channels padded, oneDNN ISA cap): the cap removes kernels, not only instructions:
# AVX512_MIC leaves the avx512_common ones (no brgconv, no brdgmm_dw), AVX2 the AVX2 ones.
PRIMITIVE_RUNS = [("728 channels", False, None), ("736 channels", True, None),
                  ("736, `DNNL_MAX_CPU_ISA=AVX512_MIC`", True, "AVX512_MIC"),
                  ("728, `DNNL_MAX_CPU_ISA=AVX2`", False, "AVX2")]


def primitive_table(tables):
    """Rows of calls / ms / share per primitive implementation, one column per run."""
    totals = {k: sum(ms for _, ms in t.values()) for k, t in tables.items()}
    keys = sorted(set().union(*tables.values()),
                  key=lambda k: -max(tables[c].get(k, [0, 0])[1] for c in tables))
    rows = []
    for key in keys + ["total"]:
        row = [key]
        for c in tables:
            calls, ms = tables[c].get(key, [0, 0.0])
            if key == "total":
                row.append("%.0f ms" % totals[c])
            else:
                row.append("%d / %.0f ms / %.0f%%" % (calls, ms, 100 * ms / totals[c])
                           if calls else "")
        rows.append(row)
    return table(["primitive implementation"] + list(tables), rows)


def primitives_section():
    """Share of a fused fp32 forward per oneDNN implementation: 728 against 736 channels, and
    with oneDNN's ISA capped (which kernels, hence which layouts and reorders, it picks)."""
    tables = {}
    for column, padded, isa in PRIMITIVE_RUNS:
        env = dict({"MKLDNN_VERBOSE": "1"}, **({"DNNL_MAX_CPU_ISA": isa} if isa else {}))
        tables[column] = workload("primitives", env=env, prefix=PREFIX,
                                  pad_channels=padded)["primitives"]
    text = ("One fused fp32 forward, batch 8 at 299x299, after two warm-ups, from "
            "`MKLDNN_VERBOSE=1` (oneDNN inside MXNet 1.9.1): calls / milliseconds / share of the "
            "forward per primitive and implementation, with the middle flow's 728 channels "
            "and padded to 736 (`xception_mx/model/padding.py`), and with oneDNN's ISA capped "
            "(`DNNL_MAX_CPU_ISA`, set before MXNet starts): one run each, so totals are "
            "indicative; section 2 has the throughput.\n\n")
    return text + primitive_table(tables)


def reduced_caps():
    """``{precision: [(label, DNNL_MAX_CPU_ISA)]}``: each precision without AMX, and with it
    where xception-predict's auto raises oneDNN's ceiling to AMX on this machine."""
    from xception_mx.cpu import AMX_ISA, isa_cap_helps_here
    caps = {}
    for precision in ("bf16", "int8"):
        caps[precision] = [("no AMX (--onednn-isa all)", "ALL")]
        if isa_cap_helps_here(precision, True) == AMX_ISA:
            caps[precision].append(("AMX (--onednn-isa amx, auto here)", AMX_ISA))
    return caps


def reduced_primitives_section():
    """Share of an int8 and a bf16 forward per oneDNN implementation, with and without AMX."""
    tables = {}
    for precision, caps in reduced_caps().items():
        for label, isa in caps:
            tables["%s, %s" % (precision, label)] = workload(
                "primitives", env={"MKLDNN_VERBOSE": "1", "DNNL_MAX_CPU_ISA": isa},
                prefix=PREFIX, pad_channels="auto", precision=precision,
                calib=PHOTOS if precision == "int8" else None)["primitives"]
    text = ("One int8 (calibrated on the 5 photos) and one bf16 forward, batch 8 at 299x299, "
            "channels padded as xception-predict's auto does, after two warm-ups, from "
            "`MKLDNN_VERBOSE=1`: calls / milliseconds / share per primitive and "
            "implementation, without AMX and, where this CPU has it, with oneDNN's AMX "
            "kernels (`DNNL_MAX_CPU_ISA=AVX512_CORE_AMX`; `xception_mx/cpu.py`). One run each; "
            "section 3 has the throughput.\n\n")
    return text + primitive_table(tables)


# (label, channels, size): the int8 1x1 convolution on the middle flow's shape (batch 8), and on
# a shape oneDNN 2.4's AMX 1x1 kernel takes (16x16 positions, channels in blocks of 64).
INT8_CONV_SHAPES = [("the middle flow's shape (736 channels, 19x19, batch 8)", 736, 19),
                    ("a shape oneDNN's AMX 1x1 kernel is built for (768 channels, 16x16)",
                     768, 16)]


def int8_conv_text(caps, keras):
    """A paragraph: the int8 1x1 convolution's rate with each of ``caps`` ([(label, ISA)]), and
    the ratio to Keras a whole forward at the middle flow's best rate would reach."""
    runs = {(shape, label): ("int8_conv_rate", {"channels": channels, "size": size},
                             {"DNNL_MAX_CPU_ISA": isa})
            for shape, channels, size in INT8_CONV_SHAPES for label, isa in caps}
    rates = {key: statistics.median(r["gops"] for r in rs) for key, rs in repeated(runs).items()}
    parts = ["on %s: %s" % (shape, ", ".join("%.0f %s" % (rates[shape, label], label)
                                              for label, _ in caps))
             for shape, _, _ in INT8_CONV_SHAPES]
    best = max(rates[INT8_CONV_SHAPES[0][0], label] for label, _ in caps)
    return ("The int8 network's kernel, oneDNN's int8 1x1 convolution with its ReLU (section 3b: "
            "about three quarters of the int8 forward), in G operations/s, median of %d runs "
            "(`int8_conv_rate` in bench/workloads.py): %s. A network that ran its whole forward "
            "at its middle flow's best rate (%.0f) would reach %.2fx Keras' fp32 batch 8; 5x "
            "needs %.0f G operations/s over the whole forward.\n\n"
            % (REPEATS, "; ".join(parts), best, ceiling(best, keras["8"]),
               5 * keras["8"] * GFLOP_PER_IMAGE))


def precision_section(keras, int8_peak):
    runs, caps_of = {}, reduced_caps()
    for precision, caps in caps_of.items():
        for label, isa in caps:
            name = "MXNet %s%s, %s" % (precision, {"bf16": " (AMP, oneDNN)",
                                                  "int8": " (oneDNN, naive calibration on the "
                                                          "5 photos)"}[precision], label)
            runs[name] = ("infer_mxnet", {"prefix": PREFIX, "mode": precision, "batches": [8],
                                          "calib": PHOTOS if precision == "int8" else None},
                          {"DNNL_MAX_CPU_ISA": isa})
    results = repeated(runs)
    fidelity = {isa: workload("fidelity", env={"DNNL_MAX_CPU_ISA": isa}, prefix=PREFIX,
                              calib=PHOTOS)
                for isa in {env["DNNL_MAX_CPU_ISA"] for _, _, env in runs.values()}}
    rows = []
    for name, (_, kwargs, env) in runs.items():
        low, med = rate_stats(results[name], "8")
        f = fidelity[env["DNNL_MAX_CPU_ISA"]][kwargs["mode"]]
        rows.append([name, "%.1f / %.1f" % (low, med), "%.2fx" % (med / keras["8"]),
                     "%.0f%%" % (100 * med * GFLOP_PER_IMAGE / int8_peak),
                     "%.3g" % f["photos"]["max_abs"], "%.0f%% / %.0f%%" % (
                         100 * f["photos"]["top1"], 100 * f["photos"]["top5"]),
                     "%.3g" % f["random"]["max_abs"], "%.0f%% / %.0f%%" % (
                         100 * f["random"]["top1"], 100 * f["random"]["top5"])])
    text = ("Batch 8, 299x299; fidelity against the fp32 checkpoint (logits) on the 5 sample "
            "photos and 8 random inputs, computed with the same oneDNN kernels (AMX or not). "
            "The demo model has random weights, so its logits are "
            "close together: a hard case for top-5 agreement. Share of int8 peak: median x "
            "%.1f G operations per image / %.0f G int8 operations/s (the machine's practical "
            "int8 peak without AMX: oneDNN's int8 inner product, uint8 or int8 data times int8 "
            "weights, on 2048x2048 matrices); the ceiling for int8 without AMX here is %.2fx "
            "Keras' fp32 batch 8.\n\n"
            % (GFLOP_PER_IMAGE, int8_peak, ceiling(int8_peak, keras["8"])))
    text += int8_conv_text(caps_of["int8"], keras)
    return text + table(["network", "images/s min / median", "vs Keras", "share of int8 peak",
                         "max |dev| photos", "top-1 / top-5 photos", "max |dev| random",
                         "top-1 / top-5 random"], rows)


def training_section():
    runs = {"MXNet Gluon (hybridized, SGD momentum), 728 channels (--channel-padding off)": (
                "train_mxnet", {}),
            "MXNet Gluon, padded to 736 channels (--channel-padding on)": (
                "train_mxnet", {"padded": True}),
            "MXNet Gluon, padded, --amp (bfloat16 compute, float32 parameters)": (
                "train_mxnet", {"padded": True, "amp": True}),
            "Keras fit": ("train_keras", {}),
            "Keras train_on_batch": ("train_keras_on_batch", {}),
            "Keras train_on_batch, mixed_bfloat16 policy": (
                "train_keras_on_batch", {"policy": "mixed_bfloat16"})}
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


EVALUATION_BATCH = 32
EVALUATION_SYNSETS = ("n01440764", "n02123045", "n03781244")   # tench, tabby, monastery
EVALUATION_COPIES = 32                                           # images per class


def evaluation_folder():
    """A labelled ImageNet-style folder (synset subfolders) of the test photos' JPEGs, copied
    ``EVALUATION_COPIES`` times per class."""
    import shutil
    folder = os.path.join(DEMO, "evaluation")
    photos = sorted(os.path.join(PHOTOS, n) for n in os.listdir(PHOTOS) if n.endswith(".jpg"))
    for synset in EVALUATION_SYNSETS:
        os.makedirs(os.path.join(folder, synset), exist_ok=True)
        for i in range(EVALUATION_COPIES):
            target = os.path.join(folder, synset, "%03d.jpg" % i)
            if not os.path.exists(target):
                shutil.copy(photos[i % len(photos)], target)
    return folder


def evaluation_section():
    folder = evaluation_folder()
    batch = str(EVALUATION_BATCH)
    runs = {"network alone (fast path, fp32, xception-predict's padding)": (
                "infer_mxnet", {"prefix": PREFIX, "mode": "fused", "pad_channels": "auto",
                                "batches": [EVALUATION_BATCH]}),
            "xception-evaluate (2 decoding workers, the same network)": (
                "evaluate_folder", {"prefix": PREFIX, "folder": folder,
                                    "batch": EVALUATION_BATCH})}
    results = repeated(runs)
    network = rate_stats(results[list(runs)[0]], batch)[1]
    rows = []
    for name, rs in results.items():
        low, med = rate_stats(rs, batch)
        high = max(r["images_per_s"][batch] for r in rs)
        rows.append([name, "%.2f / %.2f / %.2f" % (low, med, high), "%.2fx" % (med / network)])
    ratio = rate_stats(results[list(runs)[1]], batch)[1] / network
    text = ("xception-evaluate on %d JPEGs of 3 ImageNet synset folders (the test photos, "
            "decoded, resized and centre-cropped to 299x299 in worker processes), batch %d, "
            "images/s after the first batch, min / median / max of %d alternating runs; ratio "
            "to the network alone at the same batch.  Target: >= 0.80x; measured %.2fx (%s).\n\n"
            % (3 * EVALUATION_COPIES, EVALUATION_BATCH, REPEATS, ratio,
               "met" if ratio >= 0.8 else "missed"))
    return text + table(["run", "images/s", "vs the network alone"], rows)


def sections_of(text):
    """``{title: body}`` of a BENCHMARKS.md."""
    found, title = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
            found[title] = []
        elif title:
            found[title].append(line)
    return {t: "\n".join(body).strip() for t, body in found.items()}


def main():
    """``bench/run.py``: every section; ``bench/run.py 2 2b``: those, the others kept."""
    only = sys.argv[1:]
    started = time.time()
    if not os.path.exists(WEIGHTS):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_keras_reference.py"),
                        "-o", WEIGHTS], check=True)
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "keras2mxnet"), WEIGHTS, "-o",
                    PREFIX, "--force"], check=True, capture_output=True)
    state = {}

    def peaks():
        if "peaks" not in state:
            state["peaks"] = workload("peak_gflops")
        return state["peaks"]

    def inference():
        state["inference"], state["keras"] = inference_section(peaks()["gflops"])
        return state["inference"]

    def precision():
        if "keras" not in state:
            state["keras"] = {b: rate_stats(repeated({"k": ("infer_keras", {})})["k"], b)[1]
                              for b in ("1", "8", "32")}
        return precision_section(state["keras"], peaks()["int8_gops"])
    builders = [("1", "1. Conversion", lambda: bench_convert.run(WEIGHTS)[0]),
                ("1b", "1b. Conversion of a transfer model",
                 lambda: bench_convert.run_transfer(DEMO)[0]),
                ("2", "2. Inference, fp32", inference),
                ("2b", "2b. Where the time goes: oneDNN primitives", primitives_section),
                ("3", "3. Reduced precision on CPU", precision),
                ("3b", "3b. Where the int8 and bf16 time goes: oneDNN primitives",
                 reduced_primitives_section),
                ("4", "4. Training step", lambda: training_section()[0]),
                ("5", "5. Depthwise convolution micro-benchmark", depthwise_section),
                ("7", "7. Evaluation throughput (xception-evaluate)", evaluation_section)]
    old = {}
    if only and os.path.exists(os.path.join(ROOT, "BENCHMARKS.md")):
        with open(os.path.join(ROOT, "BENCHMARKS.md")) as f:
            old = sections_of(f.read())
    sections = []
    for number, title, build in builders:
        if only and number not in only:
            sections.append((title, old.get(title, "(not measured yet: `python bench/run.py "
                                                   "%s`)" % number)))
        else:
            sections.append((title, build()))
    text = ["# Benchmarks", "",
            "Written by `make bench` (`bench/run.py`) on %s in %.0f s%s." % (
                datetime.date.today(), time.time() - started,
                " (sections %s; the others from an earlier run)" % ", ".join(only)
                if only else ""), "",
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
