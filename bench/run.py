"""Run every benchmark and rewrite BENCHMARKS.md (``make bench``).

Each measurement runs in a fresh process (``bench/workloads.py`` in this venv, ``bench/peers.py``
in the peers' own: ONNX Runtime, OpenVINO), Keras/TF, xception-mx and the peers alternating over
several rounds (``BENCH_ROUNDS``, 3 by default); tables give min / median / max and the ratio
to Keras/TF measured in the same run.  ``bench/run.py 2 3 8`` runs those sections and keeps
the others of BENCHMARKS.md.
"""
import datetime
import functools
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_convert  # noqa: E402
import inference  # noqa: E402
import profiles  # noqa: E402
import serving  # noqa: E402
from common import (DEMO, PHOTOS, PREFIX, REPEATS, ROOT, SERVING_ENV, WEIGHTS,  # noqa: E402
                    machine, rate_stats, repeated, table, workload)

DEPTHWISE_SHAPES = [(64, 147), (128, 147), (128, 74), (256, 74), (256, 37), (728, 37),
                    (728, 19), (1024, 19), (1024, 10), (1536, 10)]
# The fused fp32 networks: (channels padded, oneDNN ISA cap), every candidate xception-predict's
# auto measures on a CPU with AVX-512; the row of the one it picked here says so.
FUSED = [(False, None), (True, None), (False, "AVX512_MIC"), (True, "AVX512_MIC"),
         (False, "AVX2"), (True, "AVX2")]


@functools.lru_cache(maxsize=None)
def auto_pick():
    """``(padded, cap)`` that xception-predict's auto measured fastest here for the bench's
    checkpoint (fp32, batch 8, one precision: ``serving.tuning``), measured now into a cache
    of the bench's own, and the rates it measured."""
    from xception_mx.checkpoint.reading import read_meta
    from xception_mx.cpu import one_precision_process
    from xception_mx.serving.tuning import CACHE_ENV, tuned_choice
    os.environ[CACHE_ENV] = os.path.join(DEMO, "bench-auto.json")
    if os.path.exists(os.environ[CACHE_ENV]):
        os.remove(os.environ[CACHE_ENV])              # measured in this run, beside the rest
    one_precision_process()
    lines = []
    choice = tuned_choice(PREFIX, 0, read_meta(PREFIX), "fp32", 8, log=lines.append)
    if choice is None:                                   # nothing to choose: the rules' pick
        from xception_mx.cpu import isa_cap_helps_here
        from xception_mx.model.padding import resolve_padding
        padded = resolve_padding("auto")
        return (padded, isa_cap_helps_here("fp32", padded, one_precision=True)), lines
    return (choice.padded, None if choice.isa == "all" else choice.isa.upper()), lines


def fused_runs():
    auto, lines = auto_pick()
    runs = {}
    for padded, cap in FUSED:
        name = "MXNet oneDNN-fused, %s (--channel-padding %s --onednn-isa %s)%s" % (
            "padded to 736" if padded else "728 channels", "on" if padded else "off",
            cap.lower() if cap else "all",
            ", xception-predict's auto here" if (padded, cap) == auto else "")
        runs[name] = ("infer_mxnet", {"prefix": PREFIX, "mode": "fused" if padded
                                      else "fused-unpadded"},
                      dict(SERVING_ENV, DNNL_MAX_CPU_ISA=cap or "ALL"))
    return runs, lines


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


def auto_caps():
    """``{precision: DNNL_MAX_CPU_ISA or None}`` as xception-predict's auto sets it here."""
    caps = {precision: found[-1][1] for precision, found in reduced_caps().items()}
    caps["fp32"] = auto_pick()[0][1]
    return caps


def auto_section():
    """Section 2c: what xception-predict's ``auto`` measured and picked here, against every
    candidate timed as section 2 times them (batch 8, alternating rounds)."""
    runs, said = fused_runs()
    results = repeated({name: (kind, dict(kwargs, batches=[8]), *env)
                        for name, (kind, kwargs, *env) in runs.items()})
    picked = next(name for name in results if name.endswith(inference.AUTO))
    medians = {name: rate_stats(rs, "8")[1] for name, rs in results.items()}
    rows = [[name, "%.2f / %.2f / %.2f" % rate_stats(rs, "8"),
             "%.2fx" % (medians[name] / medians[picked])] for name, rs in results.items()]
    fastest = max(medians, key=medians.get)
    text = ("fp32 at 299x299, batch 8, the demo checkpoint.  First `auto` measured its "
            "candidates (`serving.tuning`, one subprocess per ISA cap, the paddings in turns, "
            "each one's best batch), as at a user's first run:\n\n    %s\n\nThen each "
            "candidate in its own process, images/s min / median / max of %d alternating rounds, "
            "and its median against the pick's.  The fastest median here: %s (%.2fx the "
            "pick).\n\n" % ("\n    ".join(line.strip() for line in said), REPEATS,
                              "the pick" if fastest == picked else fastest,
                              medians[fastest] / medians[picked]))
    return text + table(["network", "images/s (batch 8)", "vs auto's pick"], rows)


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
        low, med, high = rate_stats(rs, None)
        rows.append([name, "%.2f / %.2f / %.2f" % (low, med, high), "%.2fx" % (med / keras),
                     "%.0f" % max(r["peak_rss_mb"] for r in rs)])
    text = ("Training step, batch 8, 299x299, 1000 classes, images/s min / median / max of %d "
            "alternating rounds; ratio to Keras train_on_batch.\n\n" % REPEATS)
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
        low, med, high = rate_stats(rs, batch)
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

    def versions():
        if "versions" not in state:
            state["versions"] = inference.prepare_peers()
        return state["versions"]

    def inference_():
        runs, said = fused_runs()
        text, state["keras"] = inference.inference_section(peaks()["gflops"], runs,
                                                           versions())
        return text + ("\n\nxception-predict's `auto` measured its candidates first, in this "
                       "run (fp32, batch 8, `serving.tuning`; a row above each, measured "
                       "again): %s\n" % " ".join(line.strip() for line in said))

    def precision():
        keras = state.get("keras") or inference.keras_rates()
        caps = reduced_caps()
        return inference.precision_section(keras, peaks()["int8_gops"], caps, versions(),
                                           profiles.int8_conv_text(caps["int8"], keras))

    def layers():
        return profiles.layers_section(auto_caps(), versions())
    builders = [("1", "1. Conversion", lambda: bench_convert.run(WEIGHTS)[0]),
                ("1b", "1b. Conversion of a transfer model",
                 lambda: bench_convert.run_transfer(DEMO)[0]),
                ("2", "2. Inference, fp32", inference_),
                ("2b", "2b. Where the time goes: oneDNN primitives",
                 profiles.primitives_section),
                ("2c", "2c. What auto picks (issue 41)", auto_section),
                ("3", "3. Reduced precision on CPU", precision),
                ("3b", "3b. Where the int8 and bf16 time goes: oneDNN primitives",
                 lambda: profiles.reduced_primitives_section(reduced_caps())),
                ("4", "4. Training step", lambda: training_section()[0]),
                ("5", "5. Depthwise convolution micro-benchmark", depthwise_section),
                ("7", "7. Evaluation throughput (xception-evaluate)", evaluation_section),
                ("8", "8. Per layer, against OpenVINO and ONNX Runtime", layers),
                ("9", "9. Serving through Multi Model Server (issue 42)",
                 serving.serving_section)]
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
