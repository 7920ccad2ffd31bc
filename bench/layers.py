"""Per-layer profiles of one Xception forward, from three runtimes, in one vocabulary:
milliseconds per (flow, kind of layer).

- Flows: entry (blocks 1-4), middle (blocks 5-12), exit (blocks 13-14 and the classifier).
- A record's block comes from its name where the runtime keeps Keras' layer names
  (``block7_sepconv2``); other records (fused pointwise convolutions OpenVINO renames,
  reorders, residual adds) take the block of the record before them, in execution order.
- MXNet's oneDNN verbose lines carry no names: convolutions are counted off in execution
  order, which oneDNN runs in the graph's topological order (``CONVOLUTIONS_PER_BLOCK``).

Pure Python (no numpy, no MXNet): imported by ``bench/peers.py`` in the peers' venv and by
``bench/workloads.py`` in the project's.
"""
import re
import statistics

FLOWS = ("entry", "middle", "exit")
KINDS = ("depthwise 3x3", "pointwise 1x1", "block 1's 3x3", "BatchNorm", "reorder / layout",
         "quantize / dequantize", "pooling", "ReLU / add", "classifier", "other")
# Convolutions per block, in Keras' Xception: block 1 two 3x3; blocks 2-4 and 13 two
# separable convolutions and the residual 1x1; blocks 5-12 three separable; block 14 two.
CONVOLUTIONS_PER_BLOCK = [2] + [5] * 3 + [6] * 8 + [5, 4]
BLOCK = re.compile(r"block(\d+)_")


def flow(block):
    return FLOWS[0] if block <= 4 else FLOWS[1] if block <= 12 else FLOWS[2]


def kind(op, name=""):
    """The kind of a layer from its runtime's operation name and its layer name."""
    op, name = op.lower(), name.lower()
    if "conv" in op and "depthwise" in name or op == "groupconvolution":
        return "depthwise 3x3"
    if "conv" in op:
        return "block 1's 3x3" if "block1_conv" in name else "pointwise 1x1"
    for words, found in ((("reorder", "transpose", "reshape", "squeeze", "convert"),
                          "reorder / layout"),
                         (("quantize",), "quantize / dequantize"),
                         (("pool", "reducemean"), "pooling"),
                         (("batch_norm", "batchnorm"), "BatchNorm"),
                         (("relu", "add", "eltwise", "sum", "multiply"), "ReLU / add"),
                         (("matmul", "fullyconnected", "inner_product", "gemm"), "classifier")):
        if any(w in op for w in words):
            return found
    return "other"


def by_names(records):
    """``[(flow, kind, ms)]`` of ``[(name, op, ms)]`` in execution order."""
    block, out = 1, []
    for name, op, ms in records:
        found = BLOCK.search(name)
        block = int(found.group(1)) if found else block
        out.append((flow(block), kind(op, name), ms))
    return out


def onnxruntime_records(events, path=None):
    """ONNX Runtime's profile (its JSON events) as one ``[(name, op, ms)]`` per run."""
    nodes = [(e["name"][:-len("_kernel_time")], e["args"]["op_name"], e["dur"] / 1000.0)
             for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    return _split_runs(nodes)


def _split_runs(records):
    runs = []
    for record in records:
        if not runs or record[0] == records[0][0]:
            runs.append([])
        runs[-1].append(record)
    return runs


def openvino_records(info):
    """OpenVINO's ``get_profiling_info()`` of the last inference as ``[(name, op, ms)]``,
    executed nodes only."""
    return [(p.node_name, p.node_type, p.real_time.total_seconds() * 1000) for p in info
            if p.real_time.total_seconds() > 0]


def mxnet_records(lines):
    """``[(flow, kind, ms)]`` of one forward's ``dnnl_verbose,exec`` lines (split on commas):
    convolutions counted off per block; pooling and sums (a block's end) in the block of the
    convolution before them, reorders and ReLUs (a block's start) in the block of the next;
    the classifier's inner product closes the exit flow."""
    limits, total = [], 0
    for count in CONVOLUTIONS_PER_BLOCK:
        total += count
        limits.append(total)
    convolutions, out = 0, []
    for fields in lines:
        primitive, descriptor, ms = fields[3], fields[-2], float(fields[-1])
        ahead = next((i + 1 for i, limit in enumerate(limits) if convolutions < limit),
                     len(limits))
        behind = next((i + 1 for i, limit in enumerate(limits) if convolutions <= limit), 1)
        if primitive == "convolution":
            convolutions += 1
            out.append((flow(ahead), _mxnet_convolution(descriptor, ahead), ms))
        else:
            block = behind if primitive.startswith(("pooling", "sum")) else ahead
            out.append((flow(block), kind(primitive), ms))
    return out


def _mxnet_convolution(descriptor, block):
    """oneDNN's problem descriptor (``mb8_g728ic728oc728_ih19...kh3...``): grouped is
    depthwise, kh1 pointwise."""
    if re.search(r"_g\d+", "_" + descriptor):
        return "depthwise 3x3"
    return "pointwise 1x1" if "kh1" in descriptor else \
        "block 1's 3x3" if block == 1 else "other"


def grouped(runs):
    """``{flow: {kind: ms}}``, each the median over ``runs`` (lists of ``(flow, kind, ms)``)."""
    sums = []
    for records in runs:
        table = {}
        for f, k, ms in records:
            table[f, k] = table.get((f, k), 0.0) + ms
        sums.append(table)
    keys = set().union(*sums)
    return {f: {k: statistics.median(s.get((f, k), 0.0) for s in sums)
                for k in KINDS if (f, k) in keys} for f in FLOWS}
