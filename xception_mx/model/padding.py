"""Channel padding for oneDNN: the same function with channel counts its fast kernels take.

oneDNN's AVX-512 convolutions work on blocks of 16 channels.  Xception's middle flow has 728
channels (a multiple of 8, not of 16), and every 1x1 convolution that reads or writes them
falls back to 8-channel AVX2 kernels at half the vector width.  Padding 728 to 736 computes
exactly the same function, because the padded channels are zero everywhere:

- a convolution's padded output filters have zero weights (and zero bias), so they output 0;
- a BatchNorm's padded channels have gamma 0, beta 0, mean 0, variance 1: 0 in, 0 out;
- ReLU, max pooling and a depthwise convolution (zero filter) keep 0 at 0; a residual sum of
  two zero channels is 0;
- the next convolution's weights for padded input channels are zero: no contribution.

``pad_network`` applies this to any symbol whose padded channels only meet those operators
(checked on the graph: anything else, e.g. a Flatten into a Dense, leaves the network as it
is).  Checkpoints on disk keep Keras' shapes; padding is for running them, by default
where it is faster (``padding_helps_here``).
"""
import json

import mxnet as mx
import numpy as np

from xception_mx.cpu import cpu_fields, has_avx512, is_intel

BLOCK = 16
PADDING_CHOICES = ("auto", "on", "off")
# Operators that never mix channels: whatever a padded channel holds (zero after ReLU,
# pooling and sums, as in Xception) stays in padded channels until a convolution, whose
# weights for them are zero.  That, not the zeros, is what keeps the function the same.
CHANNEL_WISE = {"Convolution", "BatchNorm", "Activation", "relu", "Pooling", "elemwise_add",
                "_Plus", "broadcast_add", "Dropout", "_copy", "identity"}
# A padded BatchNorm channel's moving variance holds 1 (it normalises 0 to 0 without dividing
# by zero); its gamma, beta and moving mean hold 0.
PADDED_VARIANCE = 1.0
# The same by the BatchNorm's input position: gamma, beta, moving mean, moving variance.
BATCHNORM_PAD = {1: 0.0, 2: 0.0, 3: 0.0, 4: PADDED_VARIANCE}


def padding_helps_here(cpuinfo=None, training=False, precision="fp32"):
    """Whether padding speeds this CPU up.  fp32 and int8 inference: on Intel with AVX-512,
    where oneDNN 2.4's 1x1 kernels for 16-channel blocks run at full vector width; AMD's
    AVX-512 runs the forward kernels no faster than the AVX2 ones for 728 channels, so the
    network stays as it is there.  bf16 inference: on any CPU with AVX-512, since oneDNN has
    no bf16 kernel for 728-channel blocks and falls back to gemm convolutions and a plain
    BatchNorm.  Training: on any CPU with AVX-512.  The figures behind each rule are in
    BENCHMARKS.md (sections 2, 2b and 4), measured again with ``make bench``."""
    fields = cpu_fields(cpuinfo)
    return has_avx512(fields) and (training or precision == "bf16" or is_intel(fields))


def resolve_padding(choice, training=False, precision="fp32"):
    """``auto`` / ``on`` / ``off`` (or a bool) -> whether to pad (for inference at
    ``precision``, or for ``training``)."""
    if isinstance(choice, bool):
        return choice
    assert choice in PADDING_CHOICES, choice
    if choice == "auto":
        return padding_helps_here(training=training, precision=precision)
    return choice == "on"


def padded_count(channels, block=BLOCK):
    """``channels`` rounded up to a multiple of ``block``."""
    return -(-channels // block) * block


def pad_array(value, shape, fill=0.0):
    """``value`` grown to ``shape`` at the end of every axis, the new entries ``fill``."""
    widths = [(0, new - old) for old, new in zip(value.shape, shape)]
    assert all(w >= 0 for _, w in widths), (value.shape, shape)
    return np.pad(value, widths, constant_values=fill)


def grown(value, shape, fill=0.0):
    """NDArray ``value`` grown to ``shape`` (itself when it has that shape already), the new
    entries ``fill``."""
    if tuple(value.shape) == tuple(shape):
        return value
    return mx.nd.array(pad_array(value.asnumpy(), shape, fill), dtype=value.dtype)


def cut_array(value, shape):
    """The leading ``shape`` corner of an array (NDArray or numpy): ``pad_array`` undone."""
    return value[tuple(slice(0, n) for n in shape)]


def _is_depthwise(node):
    attrs = node.get("attrs", {})
    groups = int(attrs.get("num_group", "1"))
    return groups > 1 and groups == int(attrs["num_filter"])


def channel_spaces(graph):
    """``{convolution name: space}``: convolutions whose outputs share their channels (through
    channel-wise operators, residual sums, depthwise convolutions) share a space, and must be
    padded together; ``leaked``: the spaces that reach a network output or an operator that
    is not channel-wise (a Flatten, a Dense, a concatenation would see the padding)."""
    nodes, parent, space_of = graph["nodes"], {}, {}

    def find(space):
        while parent[space] != space:
            space = parent[space]
        return space

    leaked = set()
    for index, node in enumerate(nodes):      # MXNet's JSON lists nodes in topological order
        fed = [find(space_of[source]) for source, _, _ in node["inputs"] if source in space_of]
        if node["op"] == "Convolution" and not _is_depthwise(node):
            parent[index] = space_of[index] = index   # a new channel space
        elif node["op"] in CHANNEL_WISE and fed:
            for other in fed[1:]:
                parent[other] = fed[0]        # a sum joins its inputs' spaces
            space_of[index] = fed[0]
        else:
            leaked.update(fed)
    leaked.update(find(space_of[source]) for source, _, _ in graph["heads"]
                  if source in space_of)
    leaked = {find(space) for space in leaked}
    convolutions = {nodes[i]["name"]: find(space_of[i]) for i in space_of
                    if nodes[i]["op"] == "Convolution"}
    return convolutions, leaked


def padded_graph(symbol, block=BLOCK):
    """``(graph, changed)``: the symbol's JSON graph with the output channels (and a depthwise
    convolution's groups) of every convolution whose channel space stays inside the network
    rounded up to ``block``, and the names of the convolutions changed."""
    graph = json.loads(symbol.tojson())
    spaces, leaked = channel_spaces(graph)
    changed = []
    for node in graph["nodes"]:
        if node["op"] == "null":             # parameters: shapes come from the operators
            node.get("attrs", {}).pop("__shape__", None)
        if node["op"] != "Convolution" or spaces[node["name"]] in leaked:
            continue
        attrs = node["attrs"]
        filters, groups = int(attrs["num_filter"]), int(attrs.get("num_group", "1"))
        if filters % block == 0 or groups not in (1, filters):   # grouped, not depthwise
            continue
        if groups > 1:
            attrs["num_group"] = str(padded_count(groups, block))
        attrs["num_filter"] = str(padded_count(filters, block))
        changed.append(node["name"])
    return graph, changed


def pad_parameters(graph, shapes, arg_params, aux_params):
    """The parameters grown to ``shapes`` (the padded symbol's, by name): zeros, except a
    BatchNorm's padded moving variance (1)."""
    fill = {}
    nodes = graph["nodes"]
    for node in nodes:
        if node["op"] == "BatchNorm":
            for position, (source, _, _) in enumerate(node["inputs"]):
                if position in BATCHNORM_PAD:
                    fill[nodes[source]["name"]] = BATCHNORM_PAD[position]
    return tuple({name: grown(value, shapes[name], fill.get(name, 0.0))
                  for name, value in params.items()} for params in (arg_params, aux_params))


def pad_network(symbol, arg_params, aux_params, input_shape, block=BLOCK):
    """``(symbol, arg_params, aux_params, padded_convolutions)`` computing the same function
    with channel counts rounded up to ``block`` wherever the padding stays inside the network
    (see channel_spaces); the inputs unchanged and ``[]`` when nothing is padded."""
    graph, changed = padded_graph(symbol, block)
    if not changed:
        return symbol, arg_params, aux_params, []
    padded = mx.sym.load_json(json.dumps(graph))
    _, before, _ = symbol.infer_shape(data=input_shape)
    arg_shapes, after, aux_shapes = padded.infer_shape(data=input_shape)
    assert [tuple(s) for s in before] == [tuple(s) for s in after], (before, after)
    shapes = dict(zip(padded.list_arguments(), arg_shapes))
    shapes.update(zip(padded.list_auxiliary_states(), aux_shapes))
    args, aux = pad_parameters(graph, shapes, arg_params, aux_params)
    return padded, args, aux, changed
