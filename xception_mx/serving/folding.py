"""BatchNorm folded into the convolution before it, in float32 (the same function).

oneDNN's fused fp32 graph folds BatchNorm itself.  The bf16 path cannot leave it to oneDNN:
MXNet's AMP keeps BatchNorm in float32 between bf16 convolutions (two conversions and a
separate pass each), and a fused ``_sg_mkldnn_conv`` over bf16 weights folds in bf16,
rounding twice (max logit deviation 0.075 against 0.014).  Folded here first, the weights
are rounded to bf16 once, and the graph has no BatchNorm left for AMP to keep in float32.
"""
import json

import mxnet as mx
import numpy as np


def batchnorm_scale(gamma, beta, mean, var, eps, fix_gamma):
    """``(scale, shift)`` with ``BatchNorm(x) = x * scale + shift`` in inference."""
    gamma = np.ones_like(var) if fix_gamma else gamma
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def folded_convolution(weight, bias, scale, shift):
    """The weight and bias of ``Convolution`` then the per-channel affine ``(scale, shift)``."""
    bias = np.zeros_like(shift) if bias is None else bias
    return weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1)), bias * scale + shift


def _foldable(nodes, consumers, index):
    """The Convolution feeding BatchNorm node ``index``, where nothing else reads it."""
    node = nodes[index]
    if node["op"] != "BatchNorm" or int(node.get("attrs", {}).get("axis", 1)) != 1:
        return None
    source, output, _ = node["inputs"][0]
    conv = nodes[source]
    if conv["op"] != "Convolution" or output != 0 or consumers[source] != 1:
        return None
    return source


def fold_batchnorm(symbol, arg_params, aux_params):
    """``(symbol, arg_params, aux_params)`` with every BatchNorm that follows a Convolution
    (its only reader) folded into it: the BatchNorm node becomes the convolution, with a
    bias, under the convolution's name."""
    graph = json.loads(symbol.tojson())
    nodes = graph["nodes"]
    consumers = [0] * len(nodes)
    for node in nodes:
        for source, _, _ in node["inputs"]:
            consumers[source] += 1
    args, auxs = dict(arg_params), dict(aux_params)
    for index, node in enumerate(nodes):
        source = _foldable(nodes, consumers, index)
        if source is None:
            continue
        conv, attrs = nodes[source], node.get("attrs", {})
        value = lambda i: nodes[node["inputs"][i][0]]["name"]   # noqa: E731
        scale, shift = batchnorm_scale(
            *(p.asnumpy().astype(np.float64) for p in (
                args[value(1)], args[value(2)], auxs[value(3)], auxs[value(4)])),
            eps=float(attrs.get("eps", 1e-3)),
            fix_gamma=attrs.get("fix_gamma", "True") == "True")
        weight_name = nodes[conv["inputs"][1][0]]["name"]
        bias_name = weight_name.rsplit("_weight", 1)[0] + "_bias"
        has_bias = len(conv["inputs"]) > 2
        weight, bias = folded_convolution(
            args.pop(weight_name).asnumpy().astype(np.float64),
            args.pop(bias_name).asnumpy().astype(np.float64) if has_bias else None,
            scale, shift)
        for i in (1, 2):
            args.pop(value(i))
        for i in (3, 4):
            auxs.pop(value(i))
        args[weight_name] = mx.nd.array(weight.astype(np.float32))
        args[bias_name] = mx.nd.array(bias.astype(np.float32))
        nodes[node["inputs"][1][0]]["name"] = bias_name          # BatchNorm's gamma node
        nodes[index] = dict(conv, attrs=dict(conv.get("attrs", {}), no_bias="False"),
                            inputs=[conv["inputs"][0], conv["inputs"][1], node["inputs"][1]])
        nodes[source] = dict(conv, name=conv["name"] + "_unfolded")
    return mx.sym.load_json(json.dumps(graph)), args, auxs
