"""Training data: image folders and RecordIO files, Keras-consistent
preprocessing, deterministic augmentation decoded in worker processes.

Every random choice (sample order, crop, flip) is derived from
``(seed, epoch, sample index)``, so a run is reproducible and a resumed run
sees exactly the batches the uninterrupted run would have seen, whatever the
number of worker processes.
"""
import io
import os

import mxnet as mx
import numpy as np
from mxnet import gluon
from PIL import Image

from xception_mx.errors import InputError, make_sure
from xception_mx.model.preprocess import (IMAGE_SUFFIXES, PIL_MODES, RESAMPLE, decodable,
                                          preprocess_input, raw_pixels)
from xception_mx.checkpoint.reading import mxnet_error_text

EVAL_CROP_FRACTION = 0.875          # resize to size / 0.875, then centre-crop
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def labels_file_of_rec(rec_path):
    """``train.rec`` -> ``train.labels.txt`` (written by ``xception-pack``)."""
    return os.path.splitext(rec_path)[0] + ".labels.txt"


def scan_image_folder(root, min_classes=2):
    """``(class names, [(path, label)])`` of a folder with one subfolder per class.

    Raises:
        InputError: not a folder, fewer than two classes, or a class without images.
    """
    make_sure(os.path.isdir(root), "%s: not a folder (expected one subfolder per class)", root)
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    make_sure(classes, "%s: no class subfolders (expected one subfolder of images per class)",
              root)
    make_sure(len(classes) >= min_classes, "%s: only one class ('%s'); fine-tuning a classifier "
              "needs at least two", root, classes[0])
    samples = []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
        make_sure(files, "%s: class folder has no images (%s)", folder, " ".join(IMAGE_SUFFIXES))
        samples.extend((os.path.join(folder, f), label) for f in files)
    return classes, samples


def check_images(paths):
    """Decode every image once so that a broken file stops the run before training."""
    for path in paths:
        try:
            with Image.open(path) as img:
                img.convert("RGB").load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InputError("%s: cannot read image (%s)" % (path, exc))


class FolderSource:
    """Encoded images and labels of an image folder."""

    def __init__(self, root, min_classes=2):
        self.root = root
        self.classes, self.samples = scan_image_folder(root, min_classes)
        check_images(path for path, _ in self.samples)

    def __len__(self):
        return len(self.samples)

    def label(self, i):
        return self.samples[i][1]

    def read(self, i):
        with open(self.samples[i][0], "rb") as f:
            return f.read()

    def name(self, i):
        return self.samples[i][0]


class RecordSource:
    """Encoded images and labels of an indexed RecordIO file (``.rec`` + ``.idx``).

    The file is opened lazily in each process, so worker processes each get
    their own handle.
    """

    def __init__(self, rec_path, min_classes=2):
        self.rec_path = rec_path
        self.idx_path = os.path.splitext(rec_path)[0] + ".idx"
        make_sure(os.path.isfile(rec_path), "%s: no such RecordIO file", rec_path)
        make_sure(os.path.isfile(self.idx_path), "%s: no index file %s next to it (write both "
                  "with xception-pack)", rec_path, self.idx_path)
        self._handle, self._pid = None, None
        try:
            self.keys = sorted(self._record().keys)
            self.labels = [int(self._header(k).label) for k in self.keys]
        except (mx.base.MXNetError, OSError, ValueError, IndexError) as exc:
            raise InputError("%s: not a readable indexed RecordIO file (%s)"
                             % (rec_path, mxnet_error_text(exc)))
        make_sure(self.keys, "%s: RecordIO file holds no records", rec_path)
        labels_path = labels_file_of_rec(rec_path)
        if os.path.exists(labels_path):
            with open(labels_path) as f:
                self.classes = [line.rstrip("\n") for line in f if line.strip()]
        else:
            self.classes = ["class %d" % i for i in range(max(self.labels) + 1)]
        make_sure(len(set(self.labels)) >= min_classes, "%s: only one class; fine-tuning a "
                  "classifier needs at least two", rec_path)
        make_sure(max(self.labels) < len(self.classes), "%s: label %d but %s names %d classes",
                  rec_path, max(self.labels), labels_path, len(self.classes))

    def _record(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle = mx.recordio.MXIndexedRecordIO(self.idx_path, self.rec_path, "r")
            self._pid = os.getpid()
        return self._handle

    def _header(self, key):
        header, _ = mx.recordio.unpack(self._record().read_idx(key))
        return header

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, None
        return state

    def __len__(self):
        return len(self.keys)

    def label(self, i):
        return self.labels[i]

    def read(self, i):
        _, payload = mx.recordio.unpack(self._record().read_idx(self.keys[i]))
        return payload

    def name(self, i):
        return "%s#%d" % (self.rec_path, self.keys[i])


def open_source(path, min_classes=2):
    """A ``RecordSource`` for ``.rec`` files, a ``FolderSource`` for folders (``min_classes``:
    fewer are refused; fine-tuning needs two)."""
    if str(path).endswith(".rec"):
        return RecordSource(path, min_classes)
    return FolderSource(path, min_classes)


def split_indices(labels, fraction, seed):
    """Deterministic per-class split: ``(train indices, val indices)``, at least
    one validation sample per class."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    labels = np.asarray(labels)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n_val = max(1, int(round(len(members) * fraction)))
        make_sure(n_val < len(members), "--val-split %.2f leaves no training image of class %d "
                  "(%d images)", fraction, label, len(members))
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return sorted(train), sorted(val)


def sample_rng(seed, epoch, index):
    """The random state of one sample in one epoch."""
    return np.random.RandomState(np.random.SeedSequence([seed, epoch, index]).generate_state(1))


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


def network_input(pixels, size, channels, raw):
    """Decoded pixels (an image or array of ``size``) as one CHW float32 input: raw 0..255,
    or Keras' ``x / 127.5 - 1``."""
    pixels = np.asarray(pixels, np.float32).reshape((1,) + tuple(size) + (channels,))
    return (raw_pixels if raw else preprocess_input)(pixels)[0]


def center_crop(img, size, fraction=EVAL_CROP_FRACTION):
    """Resize so the crop of ``size`` covers ``fraction`` of each side, then crop the centre."""
    height, width = size
    scale = max(height / (img.size[1] * fraction), width / (img.size[0] * fraction))
    resized = (max(width, int(round(img.size[0] * scale))),
               max(height, int(round(img.size[1] * scale))))
    img = img.resize(resized, RESAMPLE)
    left, top = (resized[0] - width) // 2, (resized[1] - height) // 2
    return img.crop((left, top, left + width, top + height))


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
        with Image.open(io.BytesIO(self.source.read(index))) as img:
            img = img.convert(PIL_MODES[self.channels])
            if self.train and self.augment:
                img = random_resized_crop(img, self.input_size,
                                          sample_rng(self.seed, epoch, index), self.min_crop)
            else:
                img = center_crop(img, self.input_size)
            x = network_input(img, self.input_size, self.channels, self.raw)
        label = self.source.label(index)
        if self.class_of_label is not None:
            label = self.class_of_label[label]
        return x, np.float32(label)


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
