"""A source's images as Gluon datasets, decoded and transformed as the model takes them,
with their samplers and loaders.

Training: every random choice (sample order, crop, flip) is derived from ``(seed, epoch,
sample index)``, so a run is reproducible and a resumed run sees exactly the batches the
uninterrupted run would have seen, whatever the number of worker processes.
"""
import numpy as np
from mxnet import gluon

from xception_mx.images.convention import network_input
from xception_mx.images.decode import decodable, decode_bytes
from xception_mx.images.transforms import (DECODERS, DEFAULT_TRANSFORM,  # noqa: F401
                                           TRANSFORMS, center_crop, random_resized_crop,
                                           to_input_size)


def sample_rng(seed, epoch, index):
    """The random state of one sample in one epoch."""
    return np.random.RandomState(np.random.SeedSequence([seed, epoch, index]).generate_state(1))


class ImageDataset(gluon.data.Dataset):
    """Samples of a source, decoded and preprocessed to ``(channels, H, W)`` float32
    in [-1, 1] (Keras' Xception preprocessing), or with ``raw`` kept as pixels
    in [0, 255] (for a model that preprocesses inside).  ``channels``: 3 (RGB), 1
    (grayscale, Pillow's ``L`` as Keras' ``load_img(color_mode="grayscale")``) or 4 (RGBA);
    every image converts, colour or not.  Training images are cropped and flipped at random
    with ``augment`` (else centre-cropped as validation's).

    Items are requested as ``(index, epoch)`` so that augmentation is a pure
    function of the seed, the epoch and the sample.
    """

    def __init__(self, source, indices, input_size, train, seed=0, min_crop=0.08, raw=False,
                 channels=3, augment=True):
        decodable(channels, "the training images")
        self.source, self.indices, self.channels = source, list(indices), channels
        self.input_size, self.train = tuple(input_size), train
        self.seed, self.min_crop, self.raw = seed, min_crop, raw
        self.augment = augment              # training images: random crop and flip
        self.class_of_label = None          # source label -> model class, when they differ

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        index = self.indices[position]
        img = decode_bytes(self.source.read(index), self.channels)
        if self.train and self.augment:
            img = random_resized_crop(img, self.input_size,
                                      sample_rng(self.seed, epoch, index), self.min_crop)
        else:
            img = center_crop(img, self.input_size)
        x = network_input(img, self.input_size, self.channels, self.raw)
        label = self.source.label(index)
        if self.class_of_label is not None and np.ndim(label):      # multi-hot
            mapped = np.zeros_like(label)
            mapped[self.class_of_label] = label
            label = mapped
        elif self.class_of_label is not None:
            label = self.class_of_label[label]
        return x, np.asarray(label, np.float32)


class EvaluationImages(gluon.data.Dataset):
    """``(input, model class, index)`` of the images of a source (``images.sources``' folder or
    RecordIO; ``indices``: which, default all), decoded to ``channels`` and transformed to
    ``input_size`` by ``transform`` (``transforms.TRANSFORMS``, default Keras' resize), in
    the checkpoint's convention (``raw`` 0..255 pixels, else ``x / 127.5 - 1``);
    ``model_class``: the model's class of each of the source's labels (``None``: a
    multi-label source, whose labels the caller takes from it)."""

    def __init__(self, source, input_size, model_class, transform=DEFAULT_TRANSFORM, raw=False,
                 channels=3, indices=None):
        self.source, self.input_size, self.model_class = source, tuple(input_size), model_class
        self.transform, self.raw, self.channels = transform, raw, channels
        self.indices = list(range(len(source)) if indices is None else indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, position):
        index = self.indices[position]
        img = decode_bytes(self.source.read(index), self.channels, DECODERS[self.transform])
        pixels = to_input_size(img, self.input_size, self.transform)
        x = network_input(pixels, self.input_size, self.channels, self.raw)
        label = self.model_class[self.source.label(index)] if self.model_class is not None \
            else 0                                          # multi-label: the caller's
        return x, np.int64(label), np.int64(index)


class EpochBatchSampler(gluon.data.Sampler):
    """Batches of ``(position, epoch)`` keys: a seeded permutation per epoch
    (training) or the plain order (evaluation)."""

    def __init__(self, length, batch_size, shuffle, seed=0, drop_last=False):
        self.length, self.batch_size = length, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self):
        if not self.shuffle:
            return np.arange(self.length)
        return np.random.RandomState(np.random.SeedSequence([self.seed, self.epoch, 7])
                                     .generate_state(1)).permutation(self.length)

    def __iter__(self):
        order = self.order()
        stop = len(self) * self.batch_size if self.drop_last else self.length
        for start in range(0, stop, self.batch_size):
            yield [(int(i), self.epoch) for i in order[start:start + self.batch_size]]

    def __len__(self):
        if self.drop_last:
            return self.length // self.batch_size
        return -(-self.length // self.batch_size)


def make_loader(dataset, sampler, workers):
    """A Gluon DataLoader decoding in ``workers`` processes (0: in this process)."""
    return gluon.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                 thread_pool=False)


def loader(dataset, batch_size, workers):
    """Batches in order, decoded in ``workers`` processes (0: here) while the network runs."""
    return gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                 num_workers=workers, thread_pool=False)
