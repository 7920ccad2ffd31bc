"""The network's input convention: what a checkpoint's ``data`` input is and the arithmetic
from decoded pixels to it.

Convention (the same as ``keras.applications.xception.preprocess_input``): RGB, values
scaled from ``[0, 255]`` to ``[-1, 1]`` by ``x / 127.5 - 1``, laid out NCHW as float32; or,
for an own model that preprocesses inside, raw pixels in ``[0, 255]``.  1 channel is
grayscale, 4 RGBA.
"""
import numpy as np

from xception_mx.model.training_only import inference_layers

PREPROCESSING = {"input_name": "data", "layout": "NCHW", "dtype": "float32", "color": "RGB",
                 "scale": "x / 127.5 - 1", "range": [-1.0, 1.0]}
COLOR_NAMES = {1: "grayscale", 3: "RGB", 4: "RGBA"}


def color_name(channels):
    """What ``PREFIX-meta.json``'s ``input.color`` says for a channel count."""
    return COLOR_NAMES.get(channels, "%d channels" % channels)


def _step_text(op):
    if op["op"] == "normalize":
        return "normalize by %s's mean and variance" % op["name"]
    if op["op"] == "cast":
        return "truncate to %s" % op["dtype"]
    if op["op"] == "resize":
        return "resize to %dx%d (%s)" % (op["size"][0], op["size"][1], op["interpolation"])
    if op["op"] == "center_crop":
        return "center crop to %dx%d" % tuple(op["size"])
    return "%s %g" % (op["op"], op["value"])


def rescales_inside(spec):
    """Whether an own model ``spec`` changes pixel values inside, and so
    takes raw 0..255 pixels (resizing and cropping alone keep Keras'
    ``x / 127.5 - 1``).  A checkpoint's meta records the answer
    (``Meta.takes_raw_pixels``)."""
    return bool(spec) and any(op["op"] not in ("resize", "center_crop")
                              for op in inference_layers(spec["preprocess"]))


def input_convention(input_size, spec=None, channels=3):
    """What a checkpoint's ``data`` input is (``PREFIX-meta.json``'s ``input``):
    Keras' preprocessed range, or for an own model ``spec`` that
    preprocesses inside, raw pixels."""
    shape = [1, channels] + list(input_size)
    steps = ", then ".join(_step_text(op) for op in
                           inference_layers((spec or {}).get("preprocess", [])))
    base = dict(PREPROCESSING, shape=shape, color=color_name(channels))
    if not rescales_inside(spec):
        scale = PREPROCESSING["scale"] + ("; inside the network: " + steps if steps else "")
        return dict(base, scale=scale)
    return dict(base, scale="raw pixels; inside the network: " + steps, range=[0.0, 255.0])


def preprocess_input(images):
    """Scale uint8-range images (NHWC or HWC, any channel count) to Keras' ``[-1, 1]`` NCHW.

    Returns float32 of shape ``(N, C, H, W)``.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError("expected images shaped (N, H, W, C), got %s" % (x.shape,))
    x = x / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def raw_pixels(images):
    """uint8-range images (NHWC) as float32 NCHW, values kept in ``[0, 255]``
    (for models that preprocess inside)."""
    x = np.asarray(images, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def network_input(pixels, size, channels, raw):
    """Decoded pixels (an image or array of ``size``) as one CHW float32 input: raw 0..255,
    or Keras' ``x / 127.5 - 1``."""
    pixels = np.asarray(pixels, np.float32).reshape((1,) + tuple(size) + (channels,))
    return (raw_pixels if raw else preprocess_input)(pixels)[0]
