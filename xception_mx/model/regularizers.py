"""Keras' stochastic regularisers in a head, acting in training at the file's rates, with
Keras 3's formulas (``keras.layers.Dropout`` and its kin); the identity at inference.

- ``Dropout(rate, noise_shape)``: keep with probability ``1 - rate``, scale by
  ``1 / (1 - rate)``; a ``noise_shape`` with 1s shares the mask along those axes.
- ``SpatialDropout2D(rate)``: ``Dropout`` of whole channels (the mask shared over H and W).
- ``GaussianNoise(stddev)``: ``x + N(0, stddev)``.
- ``GaussianDropout(rate)``: ``x * N(1, sqrt(rate / (1 - rate)))``.
- ``AlphaDropout(rate, noise_shape)``: dropped units set to SELU's negative saturation, then
  ``a * x + b`` keeping mean and variance.
"""
import math

from xception_mx.model.head_layers import SELU_ALPHA, SELU_SCALE
from xception_mx.model.training_only import TrainingOnly

NHWC_TO_NCHW = (0, 2, 3, 1)         # Keras' axis k of a feature map is MXNet's axis [k]


def shared_axes(noise_shape, on_feature_map):
    """MXNet's ``Dropout(axes=...)`` (the axes one mask value covers) for Keras'
    ``noise_shape`` (channels last; ``None``: none shared)."""
    if not noise_shape:
        return ()
    axes = [k for k, n in enumerate(noise_shape) if n == 1]
    if on_feature_map and len(noise_shape) == 4:
        axes = [NHWC_TO_NCHW[k] for k in axes]
    return tuple(sorted(axes))


def regularizer_entry(cls, name, cfg):
    """The head entry of a regulariser's Keras config."""
    if cls == "GaussianNoise":
        return {"class": cls, "name": name, "stddev": float(cfg.get("stddev", 0.0))}
    entry = {"class": cls, "name": name, "rate": float(cfg.get("rate", 0.0))}
    if cls in ("Dropout", "AlphaDropout"):
        shape = cfg.get("noise_shape")
        entry["noise_shape"] = list(shape) if shape else None
    return entry


class Regularizer(TrainingOnly):
    """One regulariser (``layer``: its head entry, or a ``regularize`` operation before the
    base).  It leaves no node in a symbol: the checkpoint's graph is the one converted
    before these layers acted (and oneDNN's fusion mishandles chains of copies)."""

    def __init__(self, layer, on_feature_map, **kwargs):
        super().__init__(prefix=layer["name"] + "_", **kwargs)
        self.layer = layer
        cls = layer["class"]
        noise_shape = [None, 1, 1, None] if cls == "SpatialDropout2D" else \
            layer.get("noise_shape")
        self.axes = shared_axes(noise_shape, on_feature_map)

    def hybrid_forward(self, F, x):
        return self._train(F, x) if self.acting(F) else x      # symbols: no node at all

    def _train(self, F, x):
        layer, cls = self.layer, self.layer["class"]
        if cls == "GaussianNoise":
            if layer["stddev"] <= 0:
                return x
            return x + F.random.normal(0.0, layer["stddev"], shape=x.shape, ctx=x.context)
        rate = layer["rate"]
        if rate <= 0:
            return x
        if cls in ("Dropout", "SpatialDropout2D"):
            return F.Dropout(x, p=rate, axes=self.axes, mode="training")
        if cls == "GaussianDropout":
            return x * F.random.normal(1.0, math.sqrt(rate / (1.0 - rate)), shape=x.shape,
                                       ctx=x.context)
        return self._alpha_dropout(F, x, rate)

    def _alpha_dropout(self, F, x, rate):
        shape = tuple(1 if k in self.axes else n for k, n in enumerate(x.shape))
        kept = F.random.uniform(0.0, 1.0, shape=shape, ctx=x.context) >= rate
        alpha_p = -SELU_ALPHA * SELU_SCALE
        a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * rate
        y = F.broadcast_add(F.broadcast_mul(x, kept), alpha_p * (1 - kept))
        return a * y + b
