"""Image files to pixels at the network's size and channels.

Images are decoded with Pillow and converted to the network's channels by one function,
``to_channels``, which every command's decoding goes through (prediction, parity,
evaluation, fine-tuning, quantization's calibration): Pillow's ``RGB`` for 3 channels,
``L`` (ITU-R 601 luma) for 1 (grayscale: X-rays, spectrograms), ``RGBA`` for 4, as Keras'
``load_img(color_mode=...)`` converts.  Under the default transform, ``keras``, a JPEG file is
decoded as TensorFlow's ``decode_image`` in ``image_dataset_from_directory`` decodes it
instead (``decode_bytes``' ``tf`` decoder: libjpeg-turbo's fast integer DCT, through
simplejpeg), pixel for pixel.  Then the images are brought to the network's input size by
the transform (``transforms.TRANSFORMS``).  Other channel counts have no image decoding:
such a model takes arrays.

``xception_mx.model.preprocess`` (and ``xception_mx.preprocess``) of 0.2 are this module;
the input convention's names they held are importable from here too.
"""
import io
import os

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from xception_mx.errors import InputError
from xception_mx.images.convention import (COLOR_NAMES, PREPROCESSING,  # noqa: F401 (0.2 names)
                                           color_name, input_convention, preprocess_input,
                                           raw_pixels, rescales_inside)
from xception_mx.images.transforms import (DECODERS, DEFAULT_TRANSFORM,  # noqa: F401
                                           RESAMPLE, to_input_size)

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


JPEG_START = b"\xff\xd8\xff"
PNG_START = b"\x89PNG"
TF_JPEG = {1: "GRAY", 3: "RGB"}     # channels -> the colour space TF's decode_jpeg gives
LIBPNG_LUMA = np.array([9797, 19234, 3737], np.uint32)   # libpng's rgb_to_gray, / 2**15
COLOUR_MODES = ("RGB", "RGBA", "P", "PA")


def libpng_luma(img):
    """A colour PNG's grayscale as TF's ``decode_png(channels=1)`` computes it (libpng's
    ``rgb_to_gray``, alpha dropped): ``(R * 9797 + G * 19234 + B * 3737) >> 15``."""
    rgb = np.asarray(img.convert("RGB"), np.uint32)
    return Image.fromarray(((rgb @ LIBPNG_LUMA) >> 15).astype(np.uint8), "L")


class ImageTooLarge(InputError):
    """An image past Pillow's pixel limit (``Image.MAX_IMAGE_PIXELS``: a decompression bomb)."""


class TruncatedJpeg(ValueError):
    """A JPEG whose data ends before its image does (TF's ``decode_image`` refuses it)."""


def _tf_jpeg(data, channels):
    """libjpeg-turbo's decoding as TF's: strict first, so that a truncated JPEG (which TF
    refuses) is told from a JPEG with a warning TF lets pass (extraneous bytes)."""
    options = dict(colorspace=TF_JPEG[channels], fastdct=True, fastupsample=False)
    try:
        return simplejpeg.decode_jpeg(data, strict=True, **options)
    except ValueError as exc:
        if "Premature end" in str(exc):
            raise TruncatedJpeg("a truncated JPEG: its data ends before the image does")
    return simplejpeg.decode_jpeg(data, strict=False, **options)


def decode_bytes(data, channels=3, decoder="pillow"):
    """Encoded image bytes (a file's, a RecordIO record's) as a PIL image of ``channels``.

    ``decoder``: ``pillow`` (Keras' ``load_img``), or ``tf``, which decodes a JPEG in 1 or 3
    channels as TensorFlow's ``decode_image`` does (libjpeg-turbo's fast integer DCT, fancy
    upsampling; grayscale as the JPEG's own luma) and a colour PNG in grayscale as libpng's
    ``rgb_to_gray``; every other image as Pillow does."""
    if decoder == "tf" and data[:3] == JPEG_START and channels in TF_JPEG:
        try:
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
            if height * width > (Image.MAX_IMAGE_PIXELS or float("inf")):
                raise ValueError("larger than Pillow's limit: Pillow's word on it")
            pixels = _tf_jpeg(data, channels)
            return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        except TruncatedJpeg:
            raise
        except ValueError:              # a JPEG libjpeg-turbo refuses: Pillow's word on it
            pass
    with Image.open(io.BytesIO(data)) as img:
        if decoder == "tf" and channels == 1 and data[:4] == PNG_START and \
                img.mode in COLOUR_MODES:
            return libpng_luma(img)
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


def load_image(path, size, channels=3, transform=DEFAULT_TRANSFORM):
    """Decode one image file to float32 ``(H, W, channels)`` 0..255 pixels at ``size=(H, W)``
    (RGB; ``L`` for 1 channel, ``RGBA`` for 4), brought to that size by ``transform``.

    Raises:
        InputError: the file is missing or not a decodable image.
    """
    decodable(channels, path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError("%s: cannot read image (%s)" % (path, exc))
    return bytes_pixels(data, size, path, channels, transform)


def pil_pixels(img, size, channels=3, transform=DEFAULT_TRANSFORM):
    """A PIL image as float32 ``(H, W, channels)`` in Pillow's mode for that many channels
    (converted first, as Keras' ``load_img`` does), brought to ``size=(H, W)`` by
    ``transform``."""
    return to_input_size(to_channels(img, channels), size, transform)


def array_pixels(array, size, name="array", channels=3, transform=DEFAULT_TRANSFORM):
    """An ``(H, W, C)`` or ``(H, W)`` gray array of 0..255 values (uint8 or float) as float32
    ``(H, W, channels)`` at ``size``, converted and transformed as image files are (a gray
    array becomes RGB for an RGB model; an RGB one luma for a grayscale model).  A channel
    count no image mode has must already be the model's, at its size."""
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
        return pixels.astype(np.float32)
    return pil_pixels(Image.fromarray(pixels), size, channels, transform)


def bytes_pixels(data, size, name="image", channels=3, transform=DEFAULT_TRANSFORM):
    """An encoded image (a request's body: JPEG, PNG, WebP...) as float32 ``(H, W,
    channels)`` at ``size``, decoded and transformed as an image file is.

    Raises:
        InputError: empty, or not a decodable image (``name`` says which).
    """
    decodable(channels, name)
    if not data:
        raise InputError("%s: cannot read image (empty: expected an encoded image, JPEG, "
                         "PNG, WebP...)" % name)
    try:
        img = decode_bytes(bytes(data), channels, DECODERS[transform])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("%s: cannot read image (%s)" % (name, exc))
    except UnidentifiedImageError:
        raise InputError("%s: cannot read image (not an image format Pillow knows: JPEG, "
                         "PNG, WebP, BMP, GIF, TIFF...)" % name)
    except UNREADABLE as exc:
        raise InputError("%s: cannot read image (%s)" % (name, exc))
    return to_input_size(img, size, transform)


def image_pixels(image, size, name=None, channels=3, transform=DEFAULT_TRANSFORM):
    """A file path, encoded image bytes, PIL image or pixel array as float32 ``(H, W,
    channels)`` at ``size``."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, size, channels, transform)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes_pixels(image, size, name or "image", channels, transform)
    if isinstance(image, Image.Image):
        decodable(channels, name or "image")
        return pil_pixels(image, size, channels, transform)
    return array_pixels(image, size, name or "array", channels, transform)


def load_images(images, size=(299, 299), raw=False, channels=3, transform=DEFAULT_TRANSFORM):
    """Decode images (file paths, encoded bytes, PIL images or pixel arrays) into one ``(N,
    channels, H, W)``
    float32 batch brought to ``size`` by ``transform`` (``transforms.TRANSFORMS``),
    preprocessed to ``[-1, 1]``, or with ``raw`` left as pixels in ``[0, 255]``."""
    images = np.stack([image_pixels(image, size, "image %d" % i, channels, transform)
                       for i, image in enumerate(images)])
    return raw_pixels(images) if raw else preprocess_input(images)
