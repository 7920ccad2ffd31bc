"""Labelled encoded images: a folder with one subfolder per class (``FolderSource``) or an
indexed RecordIO file written by ``xception-pack`` (``RecordSource``), and the
deterministic per-class split of a source into training and validation images.

A source gives ``len``, ``label(i)``, ``read(i)`` (the encoded bytes) and ``name(i)``;
decoding is ``images.datasets``'.
"""
import os

import mxnet as mx
import numpy as np

from xception_mx.errors import InputError, make_sure, mxnet_error_text
from xception_mx.images.decode import IMAGE_SUFFIXES, check_images


def labels_file_of_rec(rec_path):
    """``train.rec`` -> ``train.labels.txt`` (written by ``xception-pack``)."""
    return os.path.splitext(rec_path)[0] + ".labels.txt"


def scan_image_folder(root, min_classes=2):
    """``(class names, [(path, label)])`` of a folder with one subfolder per class.

    Raises:
        InputError: not a folder, fewer than two classes, or a class without images.
    """
    make_sure(not os.path.isfile(root + ".rec"), "%s: not a folder; %s.rec is the packed "
              "data xception-pack wrote: give its name with .rec", root, root)
    make_sure(os.path.isdir(root), "%s: not a folder (expected one subfolder per class, or a "
              ".rec file)", root)
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


def split_indices(labels, fraction, seed, classes=None):
    """Deterministic per-class split: ``(train indices, val indices)``, at least
    one validation sample per class (``classes``: their names, for messages)."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    labels = np.asarray(labels)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n_val = max(1, int(round(len(members) * fraction)))
        make_sure(n_val < len(members), "--val-split %.2f leaves no training image of class "
                  "'%s' (%d images)", fraction, classes[label] if classes else label,
                  len(members))
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return sorted(train), sorted(val)
