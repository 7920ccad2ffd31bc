"""Image files to the tensor the converted network expects.

Convention (the same as ``keras.applications.xception.preprocess_input``):
RGB, values scaled from ``[0, 255]`` to ``[-1, 1]`` by ``x / 127.5 - 1``, laid
out NCHW as float32.  Images are decoded with Pillow, converted to RGB and
resized to the network's input size with bilinear resampling.
"""
import os

import numpy as np
from PIL import Image

from xception_mx.errors import InputError

RESAMPLE = Image.BILINEAR
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


PREPROCESSING = {"input_name": "data", "layout": "NCHW", "dtype": "float32", "color": "RGB",
                 "scale": "x / 127.5 - 1", "range": [-1.0, 1.0]}


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
                              for op in spec["preprocess"])


def input_convention(input_size, spec=None):
    """What a checkpoint's ``data`` input is (``PREFIX-meta.json``'s ``input``):
    Keras' preprocessed range, or for a transfer model ``spec`` that
    preprocesses inside, raw pixels."""
    shape = [1, 3] + list(input_size)
    steps = ", then ".join(_step_text(op) for op in (spec or {}).get("preprocess", []))
    if not rescales_inside(spec):
        scale = PREPROCESSING["scale"] + ("; inside the network: " + steps if steps else "")
        return dict(PREPROCESSING, scale=scale, shape=shape)
    return dict(PREPROCESSING, scale="raw pixels; inside the network: " + steps,
                range=[0.0, 255.0], shape=shape)


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
    """Scale uint8-range RGB images (NHWC or HWC) to Keras' ``[-1, 1]`` NCHW.

    Returns float32 of shape ``(N, 3, H, W)``.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError("expected RGB images shaped (N, H, W, 3), got %s" % (x.shape,))
    x = x / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_image(path, size):
    """Decode one image file to uint8 RGB ``(H, W, 3)`` resized to ``size=(H, W)``.

    Raises:
        InputError: the file is missing or not a decodable image.
    """
    try:
        with Image.open(path) as img:
            return pil_pixels(img, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError("%s: cannot read image (%s)" % (path, exc))


def pil_pixels(img, size):
    """A PIL image as uint8 RGB ``(H, W, 3)``, resized (bilinear) to ``size=(H, W)``."""
    height, width = size
    img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), RESAMPLE)
    return np.asarray(img, dtype=np.uint8)


def array_pixels(array, size, name="array"):
    """An ``(H, W, 3)`` RGB or ``(H, W)`` gray array of 0..255 values (uint8 or float) as
    uint8 RGB ``(H, W, 3)`` at ``size``, resized as image files are."""
    a = np.asarray(array)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise InputError("%s: expected an image array shaped (H, W, 3) or (H, W), got %s"
                         % (name, a.shape))
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
        raise InputError("%s: expected pixel values in 0..255" % name)
    return pil_pixels(Image.fromarray(np.rint(a).astype(np.uint8)), size)


def image_pixels(image, size, name=None):
    """A file path, PIL image or pixel array as uint8 RGB ``(H, W, 3)`` at ``size``."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, size)
    if isinstance(image, Image.Image):
        return pil_pixels(image, size)
    return array_pixels(image, size, name or "array")


def raw_pixels(images):
    """uint8-range RGB images (NHWC) as float32 NCHW, values kept in ``[0, 255]``
    (for models that preprocess inside)."""
    x = np.asarray(images, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_images(images, size=(299, 299), raw=False):
    """Decode images (file paths, PIL images or pixel arrays) into one ``(N, 3, H, W)``
    float32 batch, preprocessed to ``[-1, 1]``, or with ``raw`` left as pixels in
    ``[0, 255]``."""
    images = np.stack([image_pixels(image, size, "image %d" % i)
                       for i, image in enumerate(images)])
    return raw_pixels(images) if raw else preprocess_input(images)
