"""Image files to the tensor the converted network expects.

Convention (the same as ``keras.applications.xception.preprocess_input``):
RGB, values scaled from ``[0, 255]`` to ``[-1, 1]`` by ``x / 127.5 - 1``, laid
out NCHW as float32.  Images are decoded with Pillow, converted to RGB and
resized to the network's input size with bilinear resampling.

A model whose input has 1 channel (grayscale: X-rays, spectrograms) gets images converted
to Pillow's ``L`` (ITU-R 601 luma) before resizing, as Keras'
``load_img(color_mode="grayscale")`` does; 4 channels are ``RGBA`` (``color_mode="rgba"``).
Other channel counts have no image decoding: such a model takes arrays.
"""
import os

import numpy as np
from PIL import Image

from xception_mx.errors import InputError
from xception_mx.model.training_only import inference_layers

RESAMPLE = Image.BILINEAR
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


PREPROCESSING = {"input_name": "data", "layout": "NCHW", "dtype": "float32", "color": "RGB",
                 "scale": "x / 127.5 - 1", "range": [-1.0, 1.0]}
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}          # channels -> the Pillow mode decoded to
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
    """Whether a transfer model ``spec`` changes pixel values inside, and so
    takes raw 0..255 pixels (resizing and cropping alone keep Keras'
    ``x / 127.5 - 1``).  A checkpoint's meta records the answer
    (``serving.loading.takes_raw_pixels``)."""
    return bool(spec) and any(op["op"] not in ("resize", "center_crop")
                              for op in inference_layers(spec["preprocess"]))


def input_convention(input_size, spec=None, channels=3):
    """What a checkpoint's ``data`` input is (``PREFIX-meta.json``'s ``input``):
    Keras' preprocessed range, or for a transfer model ``spec`` that
    preprocesses inside, raw pixels."""
    shape = [1, channels] + list(input_size)
    steps = ", then ".join(_step_text(op) for op in
                           inference_layers((spec or {}).get("preprocess", [])))
    base = dict(PREPROCESSING, shape=shape, color=color_name(channels))
    if not rescales_inside(spec):
        scale = PREPROCESSING["scale"] + ("; inside the network: " + steps if steps else "")
        return dict(base, scale=scale)
    return dict(base, scale="raw pixels; inside the network: " + steps, range=[0.0, 255.0])


def image_files(paths):
    """Image files from files and folders (a folder's images, sorted); one
    path or a list."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(str, paths):
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise InputError("%s: folder has no images (%s)"
                                 % (path, " ".join(IMAGE_SUFFIXES)))
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise InputError("%s: no such image file or folder" % path)
    return files


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


def decodable(channels, what):
    """Refuse image decoding for a channel count no image format has."""
    if channels not in PIL_MODES:
        raise InputError("%s: the model takes %d input channels, which no image file holds; "
                         "give it (H, W, %d) arrays" % (what, channels, channels))


def load_image(path, size, channels=3):
    """Decode one image file to uint8 ``(H, W, channels)`` resized to ``size=(H, W)``
    (RGB; ``L`` for 1 channel, ``RGBA`` for 4).

    Raises:
        InputError: the file is missing or not a decodable image.
    """
    decodable(channels, path)
    try:
        with Image.open(path) as img:
            return pil_pixels(img, size, channels)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError("%s: cannot read image (%s)" % (path, exc))


def pil_pixels(img, size, channels=3):
    """A PIL image as uint8 ``(H, W, channels)`` in Pillow's mode for that many channels
    (converted first, as Keras' ``load_img`` does), resized (bilinear) to ``size=(H, W)``."""
    height, width = size
    img = img.convert(PIL_MODES[channels])
    if img.size != (width, height):
        img = img.resize((width, height), RESAMPLE)
    return np.asarray(img, dtype=np.uint8).reshape(height, width, channels)


def array_pixels(array, size, name="array", channels=3):
    """An ``(H, W, C)`` or ``(H, W)`` gray array of 0..255 values (uint8 or float) as uint8
    ``(H, W, channels)`` at ``size``, converted and resized as image files are (a gray array
    becomes RGB for an RGB model; an RGB one luma for a grayscale model).  A channel count
    no image mode has must already be the model's, at its size."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    shapes = "(H, W, %d) or (H, W)" % channels if channels in PIL_MODES else \
        "(%d, %d, %d)" % (tuple(size) + (channels,))
    fits = (a.ndim == 2 and channels in PIL_MODES) or (
        a.ndim == 3 and (a.shape[-1] in PIL_MODES if channels in PIL_MODES
                         else a.shape == tuple(size) + (channels,)))
    if not fits:
        raise InputError("%s: expected an image array shaped %s, got %s" % (name, shapes, a.shape))
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
        raise InputError("%s: expected pixel values in 0..255" % name)
    pixels = np.rint(a).astype(np.uint8)
    if channels not in PIL_MODES:
        return pixels
    return pil_pixels(Image.fromarray(pixels), size, channels)


def image_pixels(image, size, name=None, channels=3):
    """A file path, PIL image or pixel array as uint8 ``(H, W, channels)`` at ``size``."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, size, channels)
    if isinstance(image, Image.Image):
        decodable(channels, name or "image")
        return pil_pixels(image, size, channels)
    return array_pixels(image, size, name or "array", channels)


def raw_pixels(images):
    """uint8-range images (NHWC) as float32 NCHW, values kept in ``[0, 255]``
    (for models that preprocess inside)."""
    x = np.asarray(images, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_images(images, size=(299, 299), raw=False, channels=3):
    """Decode images (file paths, PIL images or pixel arrays) into one ``(N, channels, H, W)``
    float32 batch, preprocessed to ``[-1, 1]``, or with ``raw`` left as pixels in
    ``[0, 255]``."""
    images = np.stack([image_pixels(image, size, "image %d" % i, channels)
                       for i, image in enumerate(images)])
    return raw_pixels(images) if raw else preprocess_input(images)
