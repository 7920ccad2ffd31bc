"""Image files to pixels at the network's size and channels.

Images are decoded with Pillow and converted to the network's channels by one function,
``to_channels``, which every command's decoding goes through (prediction, parity,
evaluation, fine-tuning, quantization's calibration): Pillow's ``RGB`` for 3 channels,
``L`` (ITU-R 601 luma) for 1 (grayscale: X-rays, spectrograms), ``RGBA`` for 4, as Keras'
``load_img(color_mode=...)`` converts.  Then they are resized to the network's input size
with bilinear resampling.  Other channel counts have no image decoding: such a model takes
arrays.

``xception_mx.model.preprocess`` (and ``xception_mx.preprocess``) of 0.2 are this module;
the input convention's names they held are importable from here too.
"""
import io
import os

import numpy as np
from PIL import Image

from xception_mx.errors import InputError
from xception_mx.images.convention import (COLOR_NAMES, PREPROCESSING,  # noqa: F401 (0.2 names)
                                           color_name, input_convention, preprocess_input,
                                           raw_pixels, rescales_inside)

RESAMPLE = Image.BILINEAR
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}          # channels -> the Pillow mode decoded to
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def to_channels(img, channels=3):
    """A PIL image in the Pillow mode of ``channels`` (``L``, ``RGB`` or ``RGBA``), converted
    as Keras' ``load_img`` converts: the one grayscale and colour conversion of every
    command.  A palette or alpha image takes Pillow's conversion (alpha dropped, not
    composited); grayscale is Pillow's ``L`` (ITU-R 601-2 luma, ``L = R * 299/1000 +
    G * 587/1000 + B * 114/1000`` in integer arithmetic)."""
    return img.convert(PIL_MODES[channels])


def decode_bytes(data, channels=3):
    """Encoded image bytes (a file's, a RecordIO record's) as a PIL image of ``channels``."""
    with Image.open(io.BytesIO(data)) as img:
        return to_channels(img, channels)


def folder_images(folder):
    """The images of ``folder`` and its subfolders (a folder of class folders too; hidden
    ones skipped), sorted by their path."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(os.path.join(root, n) for n in names
                     if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))
    return sorted(found)


def image_files(paths):
    """Image files from files and folders (a folder's images and its subfolders', sorted);
    one path or a list."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(str, paths):
        if os.path.isdir(path):
            found = folder_images(path)
            if not found:
                raise InputError("%s: no images in the folder or its subfolders (%s)"
                                 % (path, " ".join(IMAGE_SUFFIXES)))
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise InputError("%s: no such image file or folder" % path)
    return files


def check_images(paths):
    """Decode every image once so that a broken file stops the run before training."""
    for path in paths:
        try:
            with Image.open(path) as img:
                to_channels(img, 3).load()
        except UNREADABLE as exc:
            raise InputError("%s: cannot read image (%s)" % (path, exc))


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
    except UNREADABLE as exc:
        raise InputError("%s: cannot read image (%s)" % (path, exc))


def pil_pixels(img, size, channels=3):
    """A PIL image as uint8 ``(H, W, channels)`` in Pillow's mode for that many channels
    (converted first, as Keras' ``load_img`` does), resized (bilinear) to ``size=(H, W)``."""
    height, width = size
    img = to_channels(img, channels)
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


def load_images(images, size=(299, 299), raw=False, channels=3):
    """Decode images (file paths, PIL images or pixel arrays) into one ``(N, channels, H, W)``
    float32 batch, preprocessed to ``[-1, 1]``, or with ``raw`` left as pixels in
    ``[0, 255]``."""
    images = np.stack([image_pixels(image, size, "image %d" % i, channels)
                       for i, image in enumerate(images)])
    return raw_pixels(images) if raw else preprocess_input(images)
