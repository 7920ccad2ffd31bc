"""Images decode and reach the input size as Keras feeds them.  By default (``--transform
keras``: prediction, evaluation, parity, quantization, ``xception_mx.load``) as Keras'
``image_dataset_from_directory`` does: TF's JPEG decoding (libjpeg-turbo's fast DCT), TF's
grayscale of a colour PNG, TF's bilinear resize, compared with that function itself.  With
``--transform load_img`` as ``load_img`` + ``img_to_array`` (Pillow: grayscale ``L``,
colour ``RGB``, a palette through its palette, alpha dropped, ``RGBA`` kept, Pillow's
bilinear resize), and fine-tuning's validation and ``--transform crop`` as ``load_img`` then
the centre crop.  Pillow's pixels are compared exactly (the same Pillow calls on the same
bytes); TF's resize within 1e-3 of a 0..255 pixel (float rounding, measured 0 here), well
under the 1 to 8 levels by which Pillow's JPEG decoding differs from TF's."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS
from xception_mx.images.datasets import EvaluationImages, ImageDataset
from xception_mx.errors import InputError
from xception_mx.images.decode import image_pixels, load_image, load_images
from xception_mx.images.sources import FolderSource
from xception_mx.keras_side import import_keras

MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


@pytest.fixture(scope="module")
def keras():
    return import_keras()


def keras_pixels(keras, path, channels, size=None):
    """``(H, W, channels)`` float32 as Keras decodes ``path`` (at ``size``, bilinear)."""
    return keras.utils.img_to_array(keras.utils.load_img(
        path, color_mode=MODES[channels], target_size=size, interpolation="bilinear"))


@pytest.fixture
def odd_pngs(tmp_path):
    """A PNG whose alpha varies and a palette PNG with a transparent entry, from photos."""
    with Image.open(PHOTOS[1]) as photo:
        rgb = photo.convert("RGB")
    alpha = np.random.RandomState(0).randint(0, 256, (rgb.height, rgb.width), np.uint8)
    rgba = tmp_path / "alpha.png"
    Image.merge("RGBA", rgb.split() + (Image.fromarray(alpha, "L"),)).save(rgba)
    with Image.open(PHOTOS[2]) as photo:
        palette = photo.convert("P", palette=Image.ADAPTIVE, colors=64)
    path = tmp_path / "palette.png"
    palette.save(path, transparency=3)
    with Image.open(rgba) as a, Image.open(path) as p:
        assert (a.mode, p.mode, "transparency" in p.info) == ("RGBA", "P", True)
    return [str(rgba), str(path)]


@pytest.mark.parametrize("channels", [1, 3])
def test_photos_and_alpha_and_palette_pngs_decode_as_keras_load_img(keras, odd_pngs, channels):
    for path in PHOTOS + odd_pngs:
        for size in [(71, 71), (80, 90)]:
            ours = load_image(path, size, channels, "load_img")
            assert ours.dtype == np.float32 and ours.shape == size + (channels,)
            assert np.array_equal(ours.astype(np.float32), keras_pixels(keras, path, channels,
                                                                        size)), (path, size)


def one_image_source(tmp_path, path):
    folder = tmp_path / "source" / "class0"
    folder.mkdir(parents=True)
    with Image.open(path) as img, open(path, "rb") as f:
        (folder / ("image" + path[path.rindex("."):])).write_bytes(f.read())
        return FolderSource(str(tmp_path / "source"), min_classes=1), (img.height, img.width)


@pytest.mark.parametrize("channels", [1, 3])
def test_fine_tuning_validation_decodes_as_keras_load_img_then_crops(keras, odd_pngs, tmp_path,
                                                                      channels):
    size = (71, 71)
    for n, path in enumerate(PHOTOS + odd_pngs):
        source, (height, width) = one_image_source(tmp_path / str(n), path)
        x, _ = ImageDataset(source, [0], size, train=False, raw=True, channels=channels)[0]
        scale = max(size[0] / (height * 0.875), size[1] / (width * 0.875))
        resized = (max(size[0], int(round(height * scale))),
                   max(size[1], int(round(width * scale))))
        top, left = (resized[0] - size[0]) // 2, (resized[1] - size[1]) // 2
        theirs = keras_pixels(keras, path, channels, resized)[top:top + size[0],
                                                              left:left + size[1]]
        assert np.array_equal(x.transpose(1, 2, 0), theirs), path


def keras_dataset_pixels(keras, folder, channels, size):
    """Every image of ``folder`` as Keras' ``image_dataset_from_directory`` feeds it."""
    dataset = keras.utils.image_dataset_from_directory(
        str(folder), image_size=size, color_mode=MODES[channels], shuffle=False, batch_size=64,
        verbose=False)
    return np.concatenate([np.asarray(x) for x, _ in dataset]), dataset.file_paths


@pytest.fixture
def mixed_folder(tmp_path, odd_pngs):
    """The photos (JPEG), a colour, an alpha and a palette PNG, a grayscale PNG and a BMP in
    one class folder of Keras' layout."""
    folder = tmp_path / "folder" / "only"
    folder.mkdir(parents=True)
    for path in PHOTOS + odd_pngs:
        shutil.copy(path, folder / os.path.basename(path))
    with Image.open(PHOTOS[3]) as photo:
        photo.convert("RGB").save(folder / "colour.png")
        photo.convert("L").save(folder / "gray.png")
        photo.convert("RGB").save(folder / "bitmap.bmp")
    return folder.parent


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_by_default_images_are_what_keras_image_dataset_from_directory_feeds(
        keras, mixed_folder, channels):
    """Files of every kind TF decodes in ``channels`` (it refuses a BMP in grayscale, and
    decodes no JPEG in RGBA: those are left out here)."""
    folder = mixed_folder / "only"
    for name in os.listdir(folder):
        if (channels == 1 and name.endswith(".bmp")) or (channels == 4 and
                                                         name.endswith(".jpg")):
            os.remove(folder / name)
    for size in [(71, 71), (80, 90)]:
        theirs, files = keras_dataset_pixels(keras, mixed_folder, channels, size)
        ours = load_images(files, size, raw=True, channels=channels).transpose(0, 2, 3, 1)
        assert ours.shape == theirs.shape == (len(files),) + size + (channels,)
        assert np.abs(ours - theirs).max() < 1e-3, size


@pytest.mark.parametrize("transform", ["keras", "load_img", "crop"])
def test_evaluation_and_prediction_feed_the_model_the_same_inputs(mixed_folder, transform):
    """xception-evaluate's dataset and xception-predict's ``load_images`` give each image the
    same input under each transform: the two commands score the same pixels."""
    source = FolderSource(str(mixed_folder), min_classes=1)
    dataset = EvaluationImages(source, (71, 80), [0], transform)
    evaluated = np.stack([dataset[i][0] for i in range(len(dataset))])
    files = [os.path.join(str(mixed_folder), source.name(i)) for i in range(len(source))]
    assert np.array_equal(evaluated, load_images(files, (71, 80), transform=transform))


def test_a_folder_stands_for_its_images_and_its_subfolders_images(tmp_path):
    """xception-predict on a folder of class folders (evaluate's layout) predicts every image
    in it, sorted by path, instead of "folder has no images"; hidden files and folders are
    skipped, and a folder with none anywhere is refused naming it."""
    from xception_mx.errors import InputError
    from xception_mx.images.decode import image_files
    for name in ("fork/a.jpg", "fork/b.JPG", "spoon/c.png", ".cache/d.jpg", "spoon/.e.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(PHOTOS[0], tmp_path / name)
    (tmp_path / "spoon" / "notes.txt").write_text("not an image")
    assert image_files(tmp_path) == [str(tmp_path / n) for n in
                                     ("fork/a.jpg", "fork/b.JPG", "spoon/c.png")]
    (tmp_path / "empty" / "inner").mkdir(parents=True)
    with pytest.raises(InputError, match="empty: no images in the folder or its subfolders"):
        image_files(tmp_path / "empty")


def test_a_truncated_jpeg_is_refused_as_tensorflow_refuses_it(tmp_path):
    """TF's decode_image (what image_dataset_from_directory runs) refuses a JPEG cut short;
    so does every command, naming the file, instead of decoding grey into the missing rows."""
    import tensorflow as tf
    data = open(PHOTOS[0], "rb").read()
    for cut in (len(data) // 2, len(data) - 2):
        path = tmp_path / ("cut%d.jpg" % cut)
        path.write_bytes(data[:cut])
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf.io.decode_image(data[:cut], channels=3)
        with pytest.raises(InputError, match="cut%d.jpg: cannot read image .a truncated JPEG"
                           % cut):
            load_image(str(path), (71, 71))
    # encoded bytes (a request's body) are refused naming what they are
    with pytest.raises(InputError, match="body: cannot read image .empty"):
        image_pixels(b"", (71, 71), "body")
    with pytest.raises(InputError, match="body: cannot read image .not an image format"):
        image_pixels(b"hello", (71, 71), "body")
