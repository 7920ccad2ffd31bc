"""Where the time goes: MXNet's oneDNN primitives (sections 2b, 3b), the int8 1x1
convolution's rate, and one forward per layer kind and Xception flow side by side with
OpenVINO's and ONNX Runtime's own profiles (section 8, ``bench/layers.py``)."""
import statistics

from common import (GFLOP_PER_IMAGE, PHOTOS, PREFIX, REPEATS, SERVING_ENV, ceiling,
                    repeated, table, workload)
from inference import PEERS, PEERS_DIR, peer_label

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
        env = dict(SERVING_ENV, MKLDNN_VERBOSE="1", **({"DNNL_MAX_CPU_ISA": isa} if isa else {}))
        tables[column] = workload("primitives", env=env, prefix=PREFIX,
                                  pad_channels=padded)["primitives"]
    text = ("One fused fp32 forward, batch 8 at 299x299, after two warm-ups, from "
            "`MKLDNN_VERBOSE=1` (oneDNN inside MXNet 1.9.1): calls / milliseconds / share of the "
            "forward per primitive and implementation, with the middle flow's 728 channels "
            "and padded to 736 (`xception_mx/model/padding.py`), and with oneDNN's ISA capped "
            "(`DNNL_MAX_CPU_ISA`, set before MXNet starts): one run each, so totals are "
            "indicative; section 2 has the throughput.\n\n")
    return text + primitive_table(tables)


def reduced_primitives_section(caps_of):
    """Share of an int8 and a bf16 forward per oneDNN implementation, with and without AMX
    (``caps_of``: ``{precision: [(label, DNNL_MAX_CPU_ISA)]}``)."""
    tables = {}
    for precision, caps in caps_of.items():
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


# (precision, batch): bf16 first, the largest gap (issue 31).
PROFILES = [("bf16", 8), ("bf16", 1), ("fp32", 8), ("fp32", 1), ("int8", 8), ("int8", 1)]
def layer_profiles(precision, batch, isa, versions):
    """``{column: {"groups": {flow: {kind: ms}}, "wall_ms": ms}}``: xception-mx's fast path
    (oneDNN's ISA ceiling ``isa`` as xception-predict's auto sets it) and each peer."""
    env = dict(SERVING_ENV, MKLDNN_VERBOSE="1", **({"DNNL_MAX_CPU_ISA": isa} if isa else {}))
    found = {"xception-mx %s" % precision: workload(
        "layer_profile", env=env, prefix=PREFIX, precision=precision, batch=batch,
        calib=PHOTOS if precision == "int8" else None)}
    for runtime, asked in PEERS[precision]:
        found[peer_label(runtime, asked, versions)] = workload(
            "peers.profile", runtime=runtime, precision=asked, models=PEERS_DIR, batch=batch)
    return found


def layer_table(profiles):
    """Rows of flow / kind with each column's milliseconds, then the sums and wall times."""
    from layers import FLOWS, KINDS
    rows = []
    for flow in FLOWS:
        for kind in KINDS:
            cells = [p["groups"][flow].get(kind) for p in profiles.values()]
            if any(cells):
                rows.append(["%s: %s" % (flow, kind)] +
                            ["%.1f" % c if c else "" for c in cells])
    rows.append(["sum of the profiled layers"] + ["%.1f" % sum(
        ms for kinds in p["groups"].values() for ms in kinds.values())
        for p in profiles.values()])
    rows.append(["wall time of the forward"] + ["%.1f" % p["wall_ms"]
                                                 for p in profiles.values()])
    return table(["flow: kind of layer (ms)"] + list(profiles), rows)


def layers_section(isa_of, versions):
    """Section 8; ``isa_of``: ``{precision: DNNL_MAX_CPU_ISA or None}``, xception-predict's
    auto; ``versions``: the peers' (``inference.prepare_peers``)."""
    parts = ["One forward at 299x299, milliseconds per Xception flow (entry: blocks 1-4, "
             "middle: 5-12, exit: 13-14 and the classifier) and kind of layer, the median of 3 "
             "profiled forwards after two warm-ups, each runtime alone in its process: "
             "xception-mx's fast path from `MKLDNN_VERBOSE` (oneDNN primitives only; MXNet's "
             "own operators are the gap between the sum and the wall time), OpenVINO from "
             "`PERF_COUNT` (`get_profiling_info`), ONNX Runtime from its session profiler "
             "(`bench/layers.py` maps each to the flows and kinds; BatchNorm counts where a "
             "runtime runs it as its own operation). One run: read the rows, not the "
             "totals' last digit; sections 2 and 3 have the throughput."]
    for precision, batch in PROFILES:
        parts += ["### %s, batch %d" % (precision, batch),
                  layer_table(layer_profiles(precision, batch, isa_of[precision], versions))]
    return "\n\n".join(parts)
