"""Keras' Xception (Chollet, 2017) as a Gluon ``HybridBlock``.

The topology, layer names and options follow ``keras.applications.Xception``:
entry flow (blocks 1-4), middle flow (blocks 5-12), exit flow (blocks 13-14).
Every parameter is named after the Keras layer it comes from
(``block2_sepconv1_depthwise_weight``, ``block2_sepconv1_bn_gamma``...); the
four residual 1x1 convolutions, which Keras leaves unnamed, are called
``blockN_residual_conv`` / ``blockN_residual_bn``.

Keras semantics kept exactly:
- a depthwise convolution is one grouped ``Convolution`` (``num_group ==
  channels``), a pointwise convolution a 1x1 convolution, no biases;
- BatchNorm uses gamma (``fix_gamma=False``), epsilon 1e-3, momentum 0.99;
- TF ``'same'`` padding of the stride-2 3x3 max pools is asymmetric: (0, 1) on
  an even size and (1, 1) on an odd one.  MXNet expresses that as a pad of the
  "before" amount with ``pooling_convention='full'`` (``ceil_mode``), so the
  network is built for a declared input size.
"""
from mxnet.gluon import HybridBlock, nn

from xception_mx.model.padding import padded_count

MIN_INPUT_SIZE = 71
DEFAULT_INPUT_SIZE = (299, 299)
CLASSIFIER_ACTIVATIONS = ("softmax", None)
POOLINGS = (None, "avg", "max")
RGB = 3                          # ImageNet's input channels; grayscale models have 1
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99

# (block, in_channels, sepconv1 channels, sepconv2 channels, leading ReLU)
ENTRY_EXIT_BLOCKS = (
    ("block2", 64, 128, 128, False),
    ("block3", 128, 256, 256, True),
    ("block4", 256, 728, 728, True),
    ("block13", 728, 728, 1024, True),
)
MIDDLE_BLOCKS = tuple("block%d" % i for i in range(5, 13))
MIDDLE_CHANNELS = 728
FEATURE_CHANNELS = 2048


HEAD_PREFIX = "predictions_"        # the classifier's parameters: predictions_weight, _bias


def min_input_size():
    """Smallest height or width Keras' Xception accepts."""
    return MIN_INPUT_SIZE


def tf_same_pool_padding(size):
    """Leading pad of a TF ``'same'`` 3x3/stride-2 pool on an axis of ``size``.

    TF pads ``total = max((ceil(size/2) - 1) * 2 + 3 - size, 0)`` and puts the
    smaller half first: 0 before (1 after) on even sizes, 1 before (1 after) on
    odd ones.  With ``ceil_mode`` MXNet supplies the trailing pad itself.
    """
    out = -(-size // 2)
    total = max((out - 1) * 2 + 3 - size, 0)
    return total // 2


def pool_input_sizes(size):
    """Spatial sizes entering the max pools of blocks 2, 3, 4 and 13."""
    size = (size - 3) // 2 + 1 - 2   # block1_conv1 (3x3/2 valid), block1_conv2 (3x3 valid)
    sizes = []
    for _ in ENTRY_EXIT_BLOCKS:
        sizes.append(size)
        size = -(-size // 2)
    return sizes


def input_channels(input_shape, default=RGB):
    """The channel count of Keras' ``(H, W, C)``; ``default`` for ``(H, W)``."""
    shape = tuple(input_shape)
    if len(shape) == 3:
        if not isinstance(shape[2], int) or shape[2] < 1:
            raise ValueError("input_shape's channel count must be a positive integer, got %r"
                             % (input_shape,))
        return shape[2]
    return default


def check_input_shape(input_shape):
    """Return ``(height, width)`` from ``(H, W)`` or Keras' ``(H, W, C)``."""
    shape = tuple(input_shape)
    if len(shape) == 3:
        input_channels(shape)
        shape = shape[:2]
    if len(shape) != 2 or not all(isinstance(s, int) for s in shape):
        raise ValueError("input_shape must be (height, width) or (height, width, channels), "
                         "got %r" % (input_shape,))
    if min(shape) < MIN_INPUT_SIZE:
        raise ValueError("input_shape %r is too small: Xception needs height and width >= %d"
                         % (input_shape, MIN_INPUT_SIZE))
    return shape


def batch_norm(channels, prefix, frozen=False):
    """BatchNorm with Keras' defaults: gamma used, epsilon 1e-3, momentum 0.99.

    ``frozen`` makes it use (and keep) its running statistics in training too
    (``use_global_stats``).  That is the way to freeze BN statistics in MXNet:
    running a normal BatchNorm in inference mode under ``autograd`` gives wrong
    input gradients, as its backward assumes batch statistics.
    """
    return nn.BatchNorm(axis=1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=True,
                        scale=True, in_channels=channels, prefix=prefix,
                        use_global_stats=frozen)


def batchnorm_blocks(net, layers=None):
    """The ``BatchNorm`` blocks of ``net`` (with ``layers``, of the Keras layers of those
    names: a block's prefix is its layer's name and ``_``)."""
    prefixes = None if layers is None else {layer + "_" for layer in layers}
    found = []
    net.apply(lambda block: found.append(block) if isinstance(block, nn.BatchNorm) and (
        prefixes is None or block.prefix in prefixes) else None)
    return found


def set_batchnorm(net, settings):
    """Give the BatchNorm layers ``settings`` names (``{Keras layer: {"momentum": m,
    "epsilon": e}}``, a file's own values where they differ from Keras' defaults) their
    momentum and epsilon, from the next forward pass or symbol of ``net`` (before it is
    hybridized).  Returns ``net``."""
    for block in batchnorm_blocks(net, settings or {}):
        setting = settings[block.prefix[:-1]]
        block._kwargs["momentum"] = float(setting["momentum"])
        block._kwargs["eps"] = float(setting["epsilon"])
    return net


def relu(prefix):
    return nn.Activation("relu", prefix=prefix)


class SeparableConv2D(HybridBlock):
    """Keras ``SeparableConv2D(channels, 3, padding='same', use_bias=False)``.

    A depthwise 3x3 grouped convolution (one group per channel) followed by a
    pointwise 1x1 convolution; parameters ``<prefix>depthwise_weight`` of shape
    ``(C, 1, 3, 3)`` and ``<prefix>pointwise_weight`` of shape ``(O, C, 1, 1)``.
    """

    def __init__(self, in_channels, channels, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.depthwise = nn.Conv2D(in_channels, 3, padding=1, groups=in_channels,
                                       use_bias=False, in_channels=in_channels,
                                       prefix="depthwise_")
            self.pointwise = nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels,
                                       prefix="pointwise_")

    def hybrid_forward(self, F, x):
        return self.pointwise(self.depthwise(x))


class EntryBlock(HybridBlock):
    """Block 1: two valid 3x3 convolutions, each with BN and ReLU."""

    def __init__(self, frozen_bn=False, channels=RGB, **kwargs):
        super().__init__(prefix="block1_", **kwargs)
        with self.name_scope():
            self.conv1 = nn.Conv2D(32, 3, strides=2, use_bias=False, in_channels=channels,
                                   prefix="conv1_")
            self.conv1_bn = batch_norm(32, "conv1_bn_", frozen_bn)
            self.conv1_act = relu("conv1_act_")
            self.conv2 = nn.Conv2D(64, 3, use_bias=False, in_channels=32, prefix="conv2_")
            self.conv2_bn = batch_norm(64, "conv2_bn_", frozen_bn)
            self.conv2_act = relu("conv2_act_")

    def hybrid_forward(self, F, x):
        x = self.conv1_act(self.conv1_bn(self.conv1(x)))
        return self.conv2_act(self.conv2_bn(self.conv2(x)))


class DownsamplingBlock(HybridBlock):
    """Blocks 2, 3, 4 and 13: two separable convolutions, a TF-'same' max pool
    and a strided 1x1 residual convolution with BN."""

    def __init__(self, name, in_channels, channels1, channels2, leading_relu, pool_pad,
                 frozen_bn=False, **kwargs):
        super().__init__(prefix=name + "_", **kwargs)
        self.leading_relu = leading_relu
        with self.name_scope():
            self.residual_conv = nn.Conv2D(channels2, 1, strides=2, use_bias=False,
                                           in_channels=in_channels, prefix="residual_conv_")
            self.residual_bn = batch_norm(channels2, "residual_bn_", frozen_bn)
            if leading_relu:
                self.sepconv1_act = relu("sepconv1_act_")
            self.sepconv1 = SeparableConv2D(in_channels, channels1, prefix="sepconv1_")
            self.sepconv1_bn = batch_norm(channels1, "sepconv1_bn_", frozen_bn)
            self.sepconv2_act = relu("sepconv2_act_")
            self.sepconv2 = SeparableConv2D(channels1, channels2, prefix="sepconv2_")
            self.sepconv2_bn = batch_norm(channels2, "sepconv2_bn_", frozen_bn)
            self.pool = nn.MaxPool2D(3, 2, padding=pool_pad, ceil_mode=True, prefix="pool_")

    def hybrid_forward(self, F, x):
        residual = self.residual_bn(self.residual_conv(x))
        if self.leading_relu:
            x = self.sepconv1_act(x)
        x = self.sepconv1_bn(self.sepconv1(x))
        x = self.sepconv2_bn(self.sepconv2(self.sepconv2_act(x)))
        return F.elemwise_add(self.pool(x), residual, name="add")


class MiddleBlock(HybridBlock):
    """Blocks 5-12: three ReLU-separable-BN units around an identity shortcut."""

    def __init__(self, name, frozen_bn=False, channels=MIDDLE_CHANNELS, **kwargs):
        super().__init__(prefix=name + "_", **kwargs)
        with self.name_scope():
            self.units = []
            for i in (1, 2, 3):
                unit = (relu("sepconv%d_act_" % i),
                        SeparableConv2D(channels, channels, prefix="sepconv%d_" % i),
                        batch_norm(channels, "sepconv%d_bn_" % i, frozen_bn))
                for j, layer in enumerate(unit):
                    self.register_child(layer, "unit%d_%d" % (i, j))
                self.units.append(unit)

    def hybrid_forward(self, F, x):
        residual = x
        for act, sepconv, bn in self.units:
            x = bn(sepconv(act(x)))
        return F.elemwise_add(x, residual, name="add")


class ExitBlock(HybridBlock):
    """Block 14: two separable convolutions, each followed by BN and ReLU."""

    def __init__(self, frozen_bn=False, **kwargs):
        super().__init__(prefix="block14_", **kwargs)
        with self.name_scope():
            self.sepconv1 = SeparableConv2D(1024, 1536, prefix="sepconv1_")
            self.sepconv1_bn = batch_norm(1536, "sepconv1_bn_", frozen_bn)
            self.sepconv1_act = relu("sepconv1_act_")
            self.sepconv2 = SeparableConv2D(1536, FEATURE_CHANNELS, prefix="sepconv2_")
            self.sepconv2_bn = batch_norm(FEATURE_CHANNELS, "sepconv2_bn_", frozen_bn)
            self.sepconv2_act = relu("sepconv2_act_")

    def hybrid_forward(self, F, x):
        x = self.sepconv1_act(self.sepconv1_bn(self.sepconv1(x)))
        return self.sepconv2_act(self.sepconv2_bn(self.sepconv2(x)))


class Xception(HybridBlock):
    """``keras.applications.Xception`` in Gluon, for NCHW float32 input (RGB, or the channels
    ``input_shape`` gives) preprocessed as Keras does (``x / 127.5 - 1``).

    Args:
        include_top: end with global average pooling and the ``predictions``
            Dense layer.
        classes: outputs of ``predictions`` (with ``include_top``).
        pooling: without the top, ``None`` returns the 2048-channel feature map,
            ``'avg'``/``'max'`` pool it globally to ``(N, 2048)``.  Ignored
            with ``include_top``, as in Keras.
        classifier_activation: ``'softmax'`` or ``None`` (logits).
        input_shape: ``(H, W)`` or ``(H, W, C)``, each side >= 71.  The
            network reproduces TF's padding for exactly this size.  ``C``: the
            input's channels (3, or 1 for a grayscale model), as Keras' ``input_shape``.
        frozen_bn: BatchNorm layers use and keep their running statistics in
            training too (for fine-tuning with frozen statistics).
        channel_block: round every inner channel count up to a multiple of it
            (16: the middle flow's 728 channels become 736, see padding.py); the
            network computes Keras' function only with the padded slices of its
            parameters zero (``padded_training``).  ``None``: Keras' shapes.
    """

    def __init__(self, include_top=True, classes=1000, pooling=None,
                 classifier_activation="softmax", input_shape=DEFAULT_INPUT_SIZE,
                 frozen_bn=False, channel_block=None, **kwargs):
        kwargs.setdefault("prefix", "")
        super().__init__(**kwargs)
        if classifier_activation not in CLASSIFIER_ACTIVATIONS:
            raise ValueError("classifier_activation must be 'softmax' or None, got %r"
                             % (classifier_activation,))
        if pooling not in POOLINGS:
            raise ValueError("pooling must be None, 'avg' or 'max', got %r" % (pooling,))
        if include_top and (not isinstance(classes, int) or classes < 1):
            raise ValueError("classes must be a positive integer, got %r" % (classes,))
        self.input_size = check_input_shape(input_shape)
        self.channels = input_channels(input_shape)
        self.include_top = include_top
        self.classes = classes if include_top else None
        self.pooling = None if include_top else pooling
        self.classifier_activation = classifier_activation if include_top else None

        self.channel_block = channel_block

        def width(channels):
            return padded_count(channels, channel_block) if channel_block else channels

        pads = list(zip(*(map(tf_same_pool_padding, pool_input_sizes(s))
                          for s in self.input_size)))
        with self.name_scope():
            self.block1 = EntryBlock(frozen_bn, self.channels)
            self.downsampling = []
            for (name, cin, c1, c2, leading_relu), pad in zip(ENTRY_EXIT_BLOCKS, pads):
                block = DownsamplingBlock(name, width(cin), width(c1), width(c2), leading_relu,
                                          pad, frozen_bn)
                self.register_child(block, name)
                self.downsampling.append(block)
            self.middle = []
            for name in MIDDLE_BLOCKS:
                block = MiddleBlock(name, frozen_bn, width(MIDDLE_CHANNELS))
                self.register_child(block, name)
                self.middle.append(block)
            self.block14 = ExitBlock(frozen_bn)
            if include_top:
                self.avg_pool = nn.GlobalAvgPool2D(prefix="avg_pool_")
                self.predictions = nn.Dense(classes, in_units=FEATURE_CHANNELS,
                                            prefix=HEAD_PREFIX)
            elif self.pooling == "avg":
                self.global_pool = nn.GlobalAvgPool2D(prefix="avg_pool_")
            elif self.pooling == "max":
                self.global_pool = nn.GlobalMaxPool2D(prefix="max_pool_")

    def features(self, F, x):
        """The 2048-channel feature map of block 14."""
        x = self.block1(x)
        for block in self.downsampling[:3]:
            x = block(x)
        for block in self.middle:
            x = block(x)
        x = self.downsampling[3](x)
        return self.block14(x)

    def hybrid_forward(self, F, x):
        x = self.features(F, x)
        if self.include_top:
            x = self.predictions(self.avg_pool(x))
            if self.classifier_activation == "softmax":
                x = F.softmax(x, axis=-1, name="predictions_softmax")
            return x
        if self.pooling is not None:
            x = F.flatten(self.global_pool(x), name="flatten")
        return x

    def head_parameter_names(self):
        """Names of the parameters ``--freeze-base-epochs`` leaves trainable."""
        return [n for n in self.collect_params() if n.startswith(HEAD_PREFIX)]

    def config(self):
        """The constructor arguments, as JSON-ready data."""
        return {"include_top": self.include_top, "classes": self.classes,
                "pooling": self.pooling, "classifier_activation": self.classifier_activation,
                "input_shape": list(self.input_size), "channels": self.channels}
