"""A small synthetic image dataset (three texture classes) for smoke tests and
the fine-tuning walk-through, written as an image folder."""
import os

import numpy as np
from PIL import Image

CLASSES = ("checkerboard", "horizontal_stripes", "vertical_stripes")


def texture(kind, size, rng):
    """One RGB uint8 image of the texture ``kind`` with random period, phase,
    colours and noise."""
    height, width = size
    period = rng.uniform(6, 16)
    phase = rng.uniform(0, period)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "horizontal_stripes":
        mask = ((yy + phase) // (period / 2)) % 2
    elif kind == "vertical_stripes":
        mask = ((xx + phase) // (period / 2)) % 2
    elif kind == "checkerboard":
        mask = (((yy + phase) // (period / 2)) + ((xx + phase) // (period / 2))) % 2
    else:
        raise ValueError("unknown texture %r; expected one of %s" % (kind, CLASSES))
    dark, light = rng.uniform(0, 110, 3), rng.uniform(145, 255, 3)
    img = dark + mask[..., None] * (light - dark)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_shapes_dataset(root, per_class=30, size=(96, 96), seed=0, classes=CLASSES):
    """Write ``root/<class>/<n>.png``; return the class names."""
    rng = np.random.RandomState(seed)
    for kind in classes:
        folder = os.path.join(root, kind)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(texture(kind, size, rng)).save(os.path.join(folder, "%03d.png" % i))
    return list(classes)
