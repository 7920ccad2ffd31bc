"""Validation images go through the evaluation transform, not the training augmentation:
resized so that the crop covers 87.5% of each side, centre-cropped, the same every epoch.
(A run validating on randomly cropped and flipped images still learns, so the learning test
cannot tell.)"""
import numpy as np
from PIL import Image

from xception_mx.training.run_setup import Data
from shapes_dataset import write_shapes_dataset

SIZE = (71, 71)


def config(train, **extra):
    return dict({"input_shape": list(SIZE), "train": str(train), "val": None,
                 "val_split": 0.5, "seed": 3, "batch_size": 4, "min_crop": 0.08,
                 "workers": 0}, **extra)


def evaluation_crop(path, size, fraction=0.875):
    """The definition, written out: scale the shorter fit so the crop is ``fraction`` of
    each side, bilinear, crop the centre, then Keras' ``x / 127.5 - 1``, NCHW."""
    height, width = size
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = max(height / (img.height * fraction), width / (img.width * fraction))
        w, h = max(width, int(round(img.width * scale))), max(height, int(round(img.height *
                                                                                    scale)))
        img = img.resize((w, h), Image.BILINEAR)
        left, top = (w - width) // 2, (h - height) // 2
        pixels = np.asarray(img.crop((left, top, left + width, top + height)), np.float32)
    return (pixels / 127.5 - 1.0).transpose(2, 0, 1)


def batches(loader, epoch):
    """Every image of the loader in the given epoch (its keys carry the epoch)."""
    loader._batch_sampler.set_epoch(epoch)
    return np.concatenate([x.asnumpy() for x, _ in loader])


def test_validation_images_get_the_deterministic_evaluation_crop(tmp_path):
    write_shapes_dataset(str(tmp_path / "data"), per_class=4, seed=0, size=(90, 120))
    data = Data(config(tmp_path / "data"))
    first, again = batches(data.val_loader, 0), batches(data.val_loader, 5)
    np.testing.assert_array_equal(first, again)
    source, indices = data.val_loader._dataset.source, data.val_loader._dataset.indices
    expected = np.stack([evaluation_crop(source.name(i), SIZE) for i in indices])
    np.testing.assert_allclose(first, expected, atol=1e-6)
    # the training images of the same run are augmented: another crop each epoch
    train = data.train_set
    assert not np.array_equal(train[(0, 0)][0], train[(0, 1)][0])
