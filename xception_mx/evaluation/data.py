"""The labelled images an evaluation reads, decoded as the model was trained on them.

Two transforms: ``crop`` (xception-finetune's validation: resize so that the crop covers
87.5% of each side, then the centre crop), and ``keras`` (Keras'
``image_dataset_from_directory``: a bilinear resize of the whole image to the input size, TF's
half-pixel sampling without antialiasing, no crop), which reproduces what ``model.evaluate``
saw.
"""
import io

import numpy as np
from mxnet import gluon
from PIL import Image

from xception_mx.model.preprocess import PIL_MODES
from xception_mx.training.data import center_crop, network_input

TRANSFORMS = ("crop", "keras")


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


class EvaluationImages(gluon.data.Dataset):
    """``(input, model class, index)`` of the images of a source (``training.data``'s folder or
    RecordIO; ``indices``: which, default all), decoded to ``channels`` and transformed to
    ``input_size`` by ``transform``, in the checkpoint's convention (``raw`` 0..255 pixels,
    else ``x / 127.5 - 1``); ``model_class``: the model's class of each of the source's
    labels."""

    def __init__(self, source, input_size, model_class, transform="crop", raw=False,
                 channels=3, indices=None):
        self.source, self.input_size, self.model_class = source, tuple(input_size), model_class
        self.transform, self.raw, self.channels = transform, raw, channels
        self.indices = list(range(len(source)) if indices is None else indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, position):
        index = self.indices[position]
        with Image.open(io.BytesIO(self.source.read(index))) as img:
            img = img.convert(PIL_MODES[self.channels])
            if self.transform == "keras":
                pixels = keras_resize(np.asarray(img).reshape(img.size[1], img.size[0], -1),
                                      self.input_size)
            else:
                pixels = center_crop(img, self.input_size)
            x = network_input(pixels, self.input_size, self.channels, self.raw)
        return x, np.int64(self.model_class[self.source.label(index)]), np.int64(index)


def loader(dataset, batch_size, workers):
    """Batches in order, decoded in ``workers`` processes (0: here) while the network runs."""
    return gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                 num_workers=workers, thread_pool=False)
