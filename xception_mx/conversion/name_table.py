"""The Keras-to-MXNet name table of Xception, built by a loop and kept as data.

Each row says which Keras weight fills which MXNet parameter, through which
layout transform, and how the Keras layer is found in a file: named layers by
their name, the four residual 1x1 convolutions and their BatchNorms (which
Keras leaves auto-named: ``conv2d_4``, ``convolution2d_1``,
``batch_normalization``...) by their distinct shapes.

Print it with ``keras2mxnet --print-name-table`` or ``format_table(...)``.
"""
import collections

from xception_mx.model.xception import (ENTRY_EXIT_BLOCKS, FEATURE_CHANNELS, MIDDLE_BLOCKS,
                                        MIDDLE_CHANNELS, RGB)

CONV, SEPCONV, BN, DENSE, NORM = "conv", "sepconv", "bn", "dense", "normalization"

# Keras weight roles of each kind of layer, in Keras' own weight order.
ROLES = {
    CONV: ("kernel",),
    SEPCONV: ("depthwise_kernel", "pointwise_kernel"),
    BN: ("gamma", "beta", "moving_mean", "moving_variance"),
    DENSE: ("kernel", "bias"),
    NORM: ("mean", "variance", "count"),
}
# Keras class name, as Keras 3 names `.weights.h5` groups (`layers/<class>_N`).
KERAS3_CLASS = {CONV: "conv2d", SEPCONV: "separable_conv2d", BN: "batch_normalization",
                DENSE: "dense", NORM: "normalization"}
# (kind, role) -> (MXNet parameter suffix, layout transform, "arg" or "aux")
TARGET = {
    (CONV, "kernel"): ("weight", "conv_kernel", "arg"),
    (SEPCONV, "depthwise_kernel"): ("depthwise_weight", "depthwise_kernel", "arg"),
    (SEPCONV, "pointwise_kernel"): ("pointwise_weight", "pointwise_kernel", "arg"),
    (BN, "gamma"): ("gamma", "identity", "arg"),
    (BN, "beta"): ("beta", "identity", "arg"),
    (BN, "moving_mean"): ("running_mean", "identity", "aux"),
    (BN, "moving_variance"): ("running_var", "identity", "aux"),
    (DENSE, "kernel"): ("weight", "dense_kernel", "arg"),
    (DENSE, "bias"): ("bias", "identity", "arg"),
    (NORM, "mean"): ("mean", "channel_vector", "arg"),
    (NORM, "variance"): ("variance", "channel_vector", "arg"),
}

BY_NAME, BY_SHAPE = "name", "shape"

Layer = collections.namedtuple("Layer", "name kind shapes match")
Layer.__doc__ = """A weighted Keras layer: canonical name, kind, {role: Keras shape},
and how it is found in a file (``"name"`` or ``"shape"``)."""

Row = collections.namedtuple(
    "Row", "keras_layer keras_weight match mxnet_param kind transform keras_shape")


def _conv(name, cin, cout, size, match=BY_NAME):
    return Layer(name, CONV, {"kernel": (size, size, cin, cout)}, match)


def _sepconv(name, cin, cout):
    return Layer(name, SEPCONV, {"depthwise_kernel": (3, 3, cin, 1),
                                 "pointwise_kernel": (1, 1, cin, cout)}, BY_NAME)


def _bn(name, channels, match=BY_NAME):
    return Layer(name, BN, {role: (channels,) for role in ROLES[BN]}, match)


def keras_layers(include_top=True, classes=1000, channels=RGB):
    """The weighted layers of ``keras.applications.Xception`` in the order of
    ``model.layers`` (the order Keras 3 numbers ``layers/<class>_N`` in), for an input
    of ``channels`` (what ``block1_conv1`` reads)."""
    layers = [_conv("block1_conv1", channels, 32, 3), _bn("block1_conv1_bn", 32),
              _conv("block1_conv2", 32, 64, 3), _bn("block1_conv2_bn", 64)]

    def downsampling(block, cin, c1, c2):
        layers.extend([
            _sepconv(block + "_sepconv1", cin, c1), _bn(block + "_sepconv1_bn", c1),
            _sepconv(block + "_sepconv2", c1, c2), _bn(block + "_sepconv2_bn", c2),
            _conv(block + "_residual_conv", cin, c2, 1, BY_SHAPE),
            _bn(block + "_residual_bn", c2, BY_SHAPE)])

    *entry, exit_block = ENTRY_EXIT_BLOCKS
    for block, cin, c1, c2, _ in entry:
        downsampling(block, cin, c1, c2)
    for block in MIDDLE_BLOCKS:
        for i in (1, 2, 3):
            layers.extend([_sepconv("%s_sepconv%d" % (block, i), MIDDLE_CHANNELS, MIDDLE_CHANNELS),
                           _bn("%s_sepconv%d_bn" % (block, i), MIDDLE_CHANNELS)])
    block, cin, c1, c2, _ = exit_block
    downsampling(block, cin, c1, c2)
    layers.extend([_sepconv("block14_sepconv1", 1024, 1536), _bn("block14_sepconv1_bn", 1536),
                   _sepconv("block14_sepconv2", 1536, FEATURE_CHANNELS),
                   _bn("block14_sepconv2_bn", FEATURE_CHANNELS)])
    if include_top:
        layers.append(Layer("predictions", DENSE, {"kernel": (FEATURE_CHANNELS, classes),
                                                   "bias": (classes,)}, BY_NAME))
    return layers


def build_name_table(include_top=True, classes=1000, channels=RGB):
    """One row per Keras weight: where it goes in MXNet and how."""
    rows = []
    for layer in keras_layers(include_top, classes, channels):
        for role in ROLES[layer.kind]:
            suffix, transform, _ = TARGET[(layer.kind, role)]
            rows.append(Row(layer.name, role, layer.match, "%s_%s" % (layer.name, suffix),
                            layer.kind, transform, layer.shapes[role]))
    return rows


def is_aux(row):
    """Whether the row's MXNet parameter is an auxiliary state (BN statistics)."""
    return TARGET[(row.kind, row.keras_weight)][2] == "aux"


def format_table(rows, file_names=None):
    """The table as tab-separated text; ``file_names`` maps canonical Keras
    layer names to the names found in a file."""
    header = ["keras_layer", "keras_weight", "found_by", "file_layer", "mxnet_param",
              "transform", "keras_shape"]
    lines = ["\t".join(header)]
    for row in rows:
        file_name = (file_names or {}).get(row.keras_layer, "-")
        lines.append("\t".join([row.keras_layer, row.keras_weight, row.match, file_name,
                                row.mxnet_param, row.transform,
                                "x".join(map(str, row.keras_shape))]))
    return "\n".join(lines)


def as_records(rows, file_names=None):
    """The table as JSON-ready dicts (for ``PREFIX-meta.json``)."""
    return [dict(row._asdict(), keras_shape=list(row.keras_shape),
                 file_layer=(file_names or {}).get(row.keras_layer))
            for row in rows]
