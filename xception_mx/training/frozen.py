"""Layers that do not train: those the Keras file saved non-trainable (``PREFIX-meta.json``'s
``frozen_layers``, which keras2mxnet records) and, with ``--trainable-from LAYER``, every layer
before ``LAYER``.  As in Keras, a frozen layer gets no gradient and no update (weight decay
included), and a frozen BatchNorm runs in inference mode: its moving statistics stay, and it
normalises with them."""
from xception_mx.checkpoint.meta import as_meta
from xception_mx.conversion.name_table import build_name_table
from xception_mx.errors import make_sure
from xception_mx.faults import injected
from xception_mx.model.own_model import head_layers
from xception_mx.model.xception import batchnorm_blocks

PARAMETER_SUFFIXES = ("weight", "bias", "gamma", "beta", "running_mean", "running_var",
                      "depthwise_weight", "pointwise_weight", "mean", "variance")
WEIGHTED = ("Dense", "BatchNormalization")


def layer_order(meta):
    """The checkpoint's weighted layers in Keras' order (the name table's), base first."""
    meta = as_meta(meta)
    rows = meta.name_table
    if rows:
        names = [row["keras_layer"] for row in rows]
    elif meta.is_own_model:
        names = [row.keras_layer for row in build_name_table(False, channels=meta.channels)]
        names += [l["name"] for l in head_layers(meta.own_model_spec)
                  if l["class"] in WEIGHTED]
    else:
        names = [row.keras_layer for row in build_name_table(
            True, meta.num_classes or 1, meta.channels)]
    return list(dict.fromkeys(names))


def frozen_layers(meta, trainable_from=None, where="--pretrained"):
    """The layers that stay frozen: the file's, and with ``trainable_from`` all before it."""
    frozen = as_meta(meta).frozen_layers
    if trainable_from:
        order = layer_order(meta)
        make_sure(trainable_from in order, "--trainable-from %s: no layer of that name with "
                  "weights in %s (its layers: %s ... %s)", trainable_from, where,
                  ", ".join(order[:3]), ", ".join(order[-2:]))
        frozen += order[:order.index(trainable_from)]
    return list(dict.fromkeys(frozen))


def frozen_parameters(net, layers):
    """Names of ``net``'s parameters that belong to ``layers``."""
    names = {"%s_%s" % (layer, suffix) for layer in layers for suffix in PARAMETER_SUFFIXES}
    return [name for name in net.collect_params() if name in names]


def freeze_batchnorm(net, layers):
    """Run the BatchNorm layers among ``layers`` in inference mode (``use_global_stats``),
    from the next forward pass of the (not hybridized) training network."""
    if injected("frozen-bn-on-batch-statistics") is not None:
        return
    for block in batchnorm_blocks(net, layers):
        block._kwargs["use_global_stats"] = True
