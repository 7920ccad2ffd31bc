"""Keras' random augmentation layers before the base, acting in training with the file's
parameters; the identity at inference (``training_only``).

Each layer draws per-image parameters (``draw_parameters``), then transforms the batch with
them (``augment``), both as Keras 3 does (``keras.layers.RandomFlip``...):

- ``RandomFlip(mode)``: each image flipped with probability 1/2.  ``horizontal_and_vertical``
  flips both ways on one draw in Keras 3 and on two independent draws in Keras 2
  (``draws``, set from the version that wrote the file).
- ``RandomRotation``, ``RandomZoom``, ``RandomTranslation``: an affine map from output to
  input pixel coordinates, sampled as TF's ``ImageProjectiveTransformV3`` samples it:
  ``bilinear`` or ``nearest``, outside the image by ``reflect``, ``wrap``, ``nearest`` or
  ``constant`` (``fill_value``).
- ``RandomContrast``: ``(x - mean) * factor + mean`` per image and channel, clipped to
  ``value_range``; ``RandomBrightness``: ``x + delta * (high - low)``, clipped.

The ranges are stored as what is drawn: degrees, zoom and contrast factors, shifts as
fractions of the size, brightness deltas as fractions of the value range.
"""
import math

import mxnet as mx

from xception_mx.model.training_only import TrainingOnly

FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
GEOMETRIC = ("random_rotation", "random_zoom", "random_translation")


def symmetric(factor):
    """Keras' ``(lower, upper)`` of a factor: a pair as given (sorted), a number ``f`` as
    ``(-|f|, |f|)``."""
    if isinstance(factor, (list, tuple)):
        if len(factor) != 2:
            raise ValueError("a factor is one number or two, got %r" % (factor,))
        return sorted(float(f) for f in factor)
    return [-abs(float(factor)), abs(float(factor))]


def _sampling(cfg):
    fill_mode = cfg.get("fill_mode", "reflect")
    interpolation = cfg.get("interpolation", "bilinear")
    if fill_mode not in FILL_MODES:
        raise ValueError("fill_mode '%s' is not supported (supported: %s)"
                         % (fill_mode, ", ".join(FILL_MODES)))
    if interpolation not in INTERPOLATIONS:
        raise ValueError("interpolation '%s' is not supported (supported: %s)"
                         % (interpolation, ", ".join(INTERPOLATIONS)))
    return {"fill_mode": fill_mode, "interpolation": interpolation,
            "fill_value": float(cfg.get("fill_value", 0.0))}


def augmentation_op(cls, name, cfg):
    """The preprocessing operation of an augmentation layer's Keras config (Keras 2 or 3).

    Raises:
        ValueError: a setting this module does not compute (the reason).
    """
    if cfg.get("data_format") not in (None, "channels_last"):
        raise ValueError("data_format %s is not supported (channels_last)" % cfg["data_format"])
    op = {"name": name}
    if cls == "RandomFlip":
        mode = cfg.get("mode", "horizontal_and_vertical")
        if mode not in FLIP_MODES:
            raise ValueError("mode '%s' is not supported (supported: %s)"
                             % (mode, ", ".join(FLIP_MODES)))
        return dict(op, op="random_flip", mode=mode, draws="shared")
    if cls == "RandomRotation":
        low, high = symmetric(cfg["factor"])
        return dict(op, op="random_rotation", degrees=[low * 360.0, high * 360.0],
                    **_sampling(cfg))
    if cls == "RandomZoom":
        height = [1.0 + f for f in symmetric(cfg["height_factor"])]
        width = cfg.get("width_factor")
        width = None if width is None else [1.0 + f for f in symmetric(width)]
        return dict(op, op="random_zoom", height_zoom=height, width_zoom=width,
                    **_sampling(cfg))
    if cls == "RandomTranslation":
        return dict(op, op="random_translation", height_shift=symmetric(cfg["height_factor"]),
                    width_shift=symmetric(cfg["width_factor"]), **_sampling(cfg))
    value_range = sorted(float(v) for v in cfg.get("value_range") or (0, 255))
    if cls == "RandomContrast":          # Keras 3 saves (lower, upper); Keras 2 may save f
        factor = cfg["factor"]
        low, high = (factor, factor) if isinstance(factor, (int, float)) else factor
        return dict(op, op="random_contrast", contrast=[1.0 - low, 1.0 + high],
                    value_range=value_range)
    if cls == "RandomBrightness":
        return dict(op, op="random_brightness", delta=symmetric(cfg["factor"]),
                    value_range=value_range)
    raise ValueError("not an augmentation layer")


def with_keras_draws(spec, keras_version):
    """``spec`` with its flips drawn as the Keras that wrote the file draws them: Keras 2
    flips ``horizontal_and_vertical`` on two independent draws."""
    if not str(keras_version or "").startswith("2"):
        return spec
    return dict(spec, preprocess=[dict(op, draws="independent") if op["op"] == "random_flip"
                                  else op for op in spec["preprocess"]])


def _uniform(bounds, n, ctx):
    return mx.nd.random.uniform(bounds[0], bounds[1], shape=(n,), ctx=ctx)


def draw_parameters(op, n, ctx):
    """Per-image parameters of ``n`` images, drawn from MXNet's generator."""
    kind = op["op"]
    if kind == "random_flip":
        first = mx.nd.random.uniform(shape=(n,), ctx=ctx) <= 0.5
        second = first if op.get("draws", "shared") == "shared" else \
            mx.nd.random.uniform(shape=(n,), ctx=ctx) <= 0.5
        horizontal = op["mode"] in ("horizontal", "horizontal_and_vertical")
        vertical = op["mode"] in ("vertical", "horizontal_and_vertical")
        return {"horizontal": first if horizontal else None,
                "vertical": (second if horizontal else first) if vertical else None}
    if kind == "random_rotation":
        return {"degrees": _uniform(op["degrees"], n, ctx)}
    if kind == "random_zoom":
        height = _uniform(op["height_zoom"], n, ctx)
        width = height if op["width_zoom"] is None else _uniform(op["width_zoom"], n, ctx)
        return {"height_zoom": height, "width_zoom": width}
    if kind == "random_translation":
        return {"height_shift": _uniform(op["height_shift"], n, ctx),
                "width_shift": _uniform(op["width_shift"], n, ctx)}
    if kind == "random_contrast":
        return {"contrast": _uniform(op["contrast"], n, ctx)}
    return {"delta": _uniform(op["delta"], n, ctx)}


def rotation_transforms(degrees, height, width):
    """Keras' ``(N, 8)`` output-to-input maps of rotations by ``degrees`` about the centre."""
    theta = degrees * (math.pi / 180.0)
    cos, sin = mx.nd.cos(theta), mx.nd.sin(theta)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    zeros = mx.nd.zeros_like(cos)
    return mx.nd.stack(cos, -sin, cx - cx * cos + cy * sin, sin, cos,
                       cy - cx * sin - cy * cos, zeros, zeros, axis=1)


def zoom_transforms(height_zoom, width_zoom, height, width):
    """Keras' maps of zooms (below 1: in) about the centre."""
    zeros = mx.nd.zeros_like(height_zoom)
    return mx.nd.stack(width_zoom, zeros, (width - 1) / 2.0 * (1.0 - width_zoom), zeros,
                       height_zoom, (height - 1) / 2.0 * (1.0 - height_zoom), zeros, zeros,
                       axis=1)


def translation_transforms(height_shift, width_shift, height, width):
    """Keras' maps of shifts by fractions of the size (positive: right and down)."""
    ones, zeros = mx.nd.ones_like(height_shift), mx.nd.zeros_like(height_shift)
    return mx.nd.stack(ones, zeros, -width_shift * width, zeros, ones,
                       -height_shift * height, zeros, zeros, axis=1)


def _fill(coord, size, mode):
    """TF's ``map_coordinate``: where an input coordinate outside ``[0, size - 1]`` reads."""
    if mode == "constant" or size <= 1:
        return coord if mode == "constant" else mx.nd.zeros_like(coord)
    last = size - 1
    if mode == "reflect":
        period = 2.0 * size
        coord = coord - period * mx.nd.floor(coord / period)
        coord = mx.nd.where(coord >= size, period - coord - 1, coord)
    elif mode == "wrap":
        below = coord + size * (mx.nd.trunc(-coord / last) + 1)
        above = coord - size * mx.nd.trunc(coord / last)
        coord = mx.nd.where(coord < 0, below, mx.nd.where(coord > last, above, coord))
    return mx.nd.clip(coord, 0, last)


def affine_transform(x, transforms, interpolation="bilinear", fill_mode="reflect",
                     fill_value=0.0):
    """``keras.ops.image.affine_transform`` of an NCHW batch: output pixel ``(x, y)`` reads
    the input at ``((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)``, ``k = c0 x + c1 y +
    1``, one map per image."""
    n, _, height, width = x.shape
    ys = mx.nd.arange(height, ctx=x.context).reshape((1, height, 1))
    xs = mx.nd.arange(width, ctx=x.context).reshape((1, 1, width))
    t = [transforms[:, i].reshape((n, 1, 1)) for i in range(8)]
    k = mx.nd.broadcast_add(mx.nd.broadcast_mul(t[6], xs), mx.nd.broadcast_mul(t[7], ys)) + 1

    def mapped(a, b, c, size):
        coord = (mx.nd.broadcast_add(mx.nd.broadcast_add(mx.nd.broadcast_mul(a, xs),
                                                         mx.nd.broadcast_mul(b, ys)), c)) / k
        coord = _fill(coord, size, fill_mode)
        return mx.nd.round(coord) if interpolation == "nearest" else coord

    in_x, in_y = mapped(t[0], t[1], t[2], width), mapped(t[3], t[4], t[5], height)
    grid = mx.nd.stack(in_x * (2.0 / max(width - 1, 1)) - 1.0,
                       in_y * (2.0 / max(height - 1, 1)) - 1.0, axis=1)
    out = mx.nd.BilinearSampler(x, grid)
    if fill_mode == "constant" and fill_value:
        inside = mx.nd.BilinearSampler(mx.nd.ones_like(x), grid)
        out = out + fill_value * (1.0 - inside)
    return out


def _flip(x, chosen, axis):
    if chosen is None:
        return x
    return mx.nd.where(chosen, mx.nd.flip(x, axis=axis), x)


def augment(op, x, params):
    """The batch ``x`` (NCHW) augmented by ``op`` with drawn ``params``."""
    kind, (height, width) = op["op"], x.shape[2:]
    if kind == "random_flip":
        return _flip(_flip(x, params["horizontal"], 3), params["vertical"], 2)
    if kind in GEOMETRIC:
        transforms = (
            rotation_transforms(params["degrees"], height, width) if kind == "random_rotation"
            else zoom_transforms(params["height_zoom"], params["width_zoom"], height, width)
            if kind == "random_zoom" else
            translation_transforms(params["height_shift"], params["width_shift"], height,
                                   width))
        return affine_transform(x, transforms, op["interpolation"], op["fill_mode"],
                                op["fill_value"])
    low, high = op["value_range"]
    if kind == "random_contrast":
        mean = x.mean(axis=(2, 3), keepdims=True)
        factor = params["contrast"].reshape((-1, 1, 1, 1))
        return mx.nd.clip(mx.nd.broadcast_add(mx.nd.broadcast_mul(
            mx.nd.broadcast_sub(x, mean), factor), mean), low, high)
    delta = (params["delta"] * (high - low)).reshape((-1, 1, 1, 1))
    return mx.nd.clip(mx.nd.broadcast_add(x, delta), low, high)


class Augmentation(TrainingOnly):
    """One augmentation layer before the base (``op``: its preprocessing operation)."""

    def __init__(self, op, **kwargs):
        super().__init__(**kwargs)
        self.op = op

    def hybrid_forward(self, F, x):
        if not self.acting(F):
            return x
        return augment(self.op, x, draw_parameters(self.op, x.shape[0], x.context))
