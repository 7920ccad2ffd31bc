"""Multi-label images from a CSV file (``--labels-csv``): one row per image,
``path,label;label;...`` (an optional first row ``path,labels``; an image with no label is a
row with an empty second field).  Paths are relative to an image folder (the CSV's own
folder unless another is given).  The classes are the labels' names in sorted order, as
folders' names number a single-label set; each image's label is a multi-hot vector.

A ``LabelsCsvSource`` is a source as ``images.sources``' (``len``, ``label(i)``, ``read(i)``,
``name(i)``, ``classes``), with ``multilabel`` set."""
import csv
import os

import numpy as np

from xception_mx.errors import InputError, make_sure
from xception_mx.images.decode import IMAGE_SUFFIXES, check_images

HEADER = ("path", "labels")


def read_labels_csv(path, root=None):
    """``(classes, [(image path, [label names])])`` of a labels CSV, every image checked to
    exist; one line naming the file and row for what is wrong."""
    root = root or os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError("--labels-csv %s: cannot read it (%s)" % (path, exc))
    first = 1
    if rows and tuple(c.strip().lower() for c in rows[0]) == HEADER:
        rows, first = rows[1:], 2
    samples = []
    for number, row in enumerate(rows, first):
        if not row or not any(cell.strip() for cell in row):
            continue
        make_sure(len(row) == 2, "--labels-csv %s, row %d: expected path,label;label;... "
                  "(2 fields), got %d", path, number, len(row))
        image = os.path.join(root, row[0].strip())
        make_sure(image.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(image),
                  "--labels-csv %s, row %d: %s is not an image file (%s)", path, number,
                  image, " ".join(IMAGE_SUFFIXES))
        samples.append((image, sorted({l.strip() for l in row[1].split(";") if l.strip()})))
    make_sure(samples, "--labels-csv %s: no rows (expected path,label;label;...)", path)
    classes = sorted({label for _, labels in samples for label in labels})
    make_sure(len(classes) >= 2, "--labels-csv %s: %d label names; a multi-label classifier "
              "needs at least two", path, len(classes))
    return classes, samples


class LabelsCsvSource:
    """Encoded images and multi-hot labels of a labels CSV."""
    multilabel = True

    def __init__(self, path, root=None):
        self.classes, self.samples = read_labels_csv(path, root)
        check_images(image for image, _ in self.samples)
        index = {name: i for i, name in enumerate(self.classes)}
        self.hot = np.zeros((len(self.samples), len(self.classes)), np.float32)
        for i, (_, labels) in enumerate(self.samples):
            self.hot[i, [index[label] for label in labels]] = 1.0

    def __len__(self):
        return len(self.samples)

    def label(self, i):
        return self.hot[i]

    def read(self, i):
        with open(self.samples[i][0], "rb") as f:
            return f.read()

    def name(self, i):
        return self.samples[i][0]
