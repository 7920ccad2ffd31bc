"""Decoded images to the network's input size: the transforms of prediction and evaluation,
and training's random resized crop and flip.

``TRANSFORMS``, each a way a Keras user brings an image to the input size, chosen by
``--transform`` (``to_input_size``):

- ``keras`` (the default of xception-predict, xception-evaluate, xception-parity, quantize's
  calibration and ``xception_mx.load``): Keras' ``image_dataset_from_directory``, a JPEG
  decoded as TF decodes it (``decode.decode_bytes``' ``tf`` decoder), then a bilinear resize
  of the whole image, TF's half-pixel sampling without antialiasing, no crop, float values
  not rounded (``keras_resize``): what ``model.evaluate``/``model.predict`` saw;
- ``load_img``: ``keras.utils.load_img(path, target_size=..., interpolation="bilinear")``,
  Pillow's bilinear resize (antialiased when shrinking), rounded to 0..255 integers;
- ``crop`` (xception-finetune's validation): resize so that the centre 87.5% of each side
  fills the input, then crop the centre (``center_crop``).
"""
import numpy as np
from PIL import Image

RESAMPLE = Image.BILINEAR
TRANSFORMS = ("keras", "load_img", "crop")
DEFAULT_TRANSFORM = "keras"
DECODERS = {"keras": "tf", "load_img": "pillow", "crop": "pillow"}  # decode.decode_bytes'
TRANSFORM_TEXT = {
    "keras": "--transform keras: the whole image resized to the input as TensorFlow does, no "
             "crop (Keras' image_dataset_from_directory)",
    "load_img": "--transform load_img: the whole image resized by Pillow's bilinear filter "
                "(keras.utils.load_img with target_size)",
    "crop": "--transform crop: resized so that the centre 87.5% fills the input, then "
            "centre-cropped (fine-tuning's validation)"}

EVAL_CROP_FRACTION = 0.875          # resize to size / 0.875, then centre-crop
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def random_resized_crop(img, size, rng, min_area=0.08):
    """Inception-style crop: a random area in [min_area, 1] of the image with an
    aspect ratio in [3/4, 4/3], resized to ``size=(H, W)``; then a random
    horizontal flip."""
    width, height = img.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(min_area, 1.0)
        ratio = np.exp(rng.uniform(np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1])))
        w = int(round(np.sqrt(target * ratio)))
        h = int(round(np.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w + 1)
            top = rng.randint(0, height - h + 1)
            break
    else:
        w, h = min(width, height), min(width, height)
        left, top = (width - w) // 2, (height - h) // 2
    img = img.resize((size[1], size[0]), RESAMPLE, box=(left, top, left + w, top + h))
    if rng.uniform() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def center_crop(img, size, fraction=EVAL_CROP_FRACTION):
    """Resize so the crop of ``size`` covers ``fraction`` of each side, then crop the centre."""
    height, width = size
    scale = max(height / (img.size[1] * fraction), width / (img.size[0] * fraction))
    resized = (max(width, int(round(img.size[0] * scale))),
               max(height, int(round(img.size[1] * scale))))
    img = img.resize(resized, RESAMPLE)
    left, top = (resized[0] - width) // 2, (resized[1] - height) // 2
    return img.crop((left, top, left + width, top + height))


def _axis(in_size, out_size):
    """TF's half-pixel bilinear weights along one axis: lower and upper source index, lerp."""
    source = (np.arange(out_size, dtype=np.float32) + 0.5) * np.float32(in_size / out_size) - 0.5
    floor = np.floor(source)
    lower = np.clip(floor, 0, in_size - 1).astype(np.int64)
    upper = np.clip(np.ceil(source), 0, in_size - 1).astype(np.int64)
    return lower, upper, (source - floor).astype(np.float32)


def keras_resize(pixels, size):
    """``tf.image.resize(pixels, size)`` (bilinear, no antialiasing) of an HxWxC array, as
    float32 (not rounded, as Keras feeds it)."""
    x = np.asarray(pixels, np.float32)
    top, bottom, y_lerp = _axis(x.shape[0], size[0])
    left, right, x_lerp = _axis(x.shape[1], size[1])
    x_lerp = x_lerp[None, :, None]

    def row(rows):
        line = x[rows]
        return line[:, left] + (line[:, right] - line[:, left]) * x_lerp
    upper, lower = row(top), row(bottom)
    return upper + (lower - upper) * y_lerp[:, None, None]


def to_input_size(img, size, transform=DEFAULT_TRANSFORM):
    """A PIL image, already in the model's channels, as float32 ``(H, W, C)`` pixels at
    ``size=(H, W)`` by ``transform`` (one of ``TRANSFORMS``)."""
    if transform == "keras":
        return keras_resize(image_array(img), size)
    if transform == "crop":
        img = center_crop(img, size)
    elif img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), RESAMPLE)
    return image_array(img).astype(np.float32)


def image_array(img):
    """A PIL image's pixels as an ``(H, W, C)`` array (``C`` 1 for grayscale)."""
    return np.asarray(img).reshape(img.size[1], img.size[0], -1)
