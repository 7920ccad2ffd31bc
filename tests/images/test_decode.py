"""Every command decodes an image file as Keras' ``load_img`` + ``img_to_array`` does:
grayscale as Pillow's ``L``, colour as ``RGB`` (a palette image through its palette, an
alpha channel dropped), ``RGBA`` kept, then Pillow's bilinear resize.  The paths differ only
after the conversion (``xception_mx.images.decode.to_channels``): prediction, parity and
quantization resize the whole image (``load_image``), fine-tuning's validation and
xception-evaluate's ``crop`` resize then crop the centre, ``--transform keras`` resizes as TF.
Pixels are compared exactly (tolerance 0): the same Pillow calls on the same bytes."""
import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS
from xception_mx.images.datasets import EvaluationImages, ImageDataset
from xception_mx.images.decode import load_image, load_images
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
            ours = load_image(path, size, channels)
            assert ours.dtype == np.uint8 and ours.shape == size + (channels,)
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


@pytest.mark.parametrize("channels", [1, 3])
def test_evaluation_decodes_as_keras_load_img(keras, odd_pngs, tmp_path, channels):
    """``--transform keras`` at the image's own size is the identity: the decoding alone."""
    for n, path in enumerate(PHOTOS + odd_pngs):
        source, size = one_image_source(tmp_path / str(n), path)
        x, label, index = EvaluationImages(source, size, [0], "keras", raw=True,
                                           channels=channels)[0]
        assert (label, index) == (0, 0)
        assert np.array_equal(x.transpose(1, 2, 0), keras_pixels(keras, path, channels)), path


@pytest.mark.parametrize("channels, mode", [(1, "grayscale"), (3, "rgb"), (4, "rgba")])
def test_images_decode_as_keras_load_img_does(channels, mode, tmp_path):
    keras = import_keras()
    gray = tmp_path / "gray.png"
    Image.open(PHOTOS[0]).convert("L").save(gray)
    rgba = tmp_path / "rgba.png"
    Image.open(PHOTOS[1]).convert("RGBA").save(rgba)
    files = PHOTOS + [str(gray), str(rgba)]
    for size in [(71, 71), (80, 90)]:
        ours = load_images(files, size, raw=True, channels=channels).transpose(0, 2, 3, 1)
        theirs = np.stack([keras.utils.img_to_array(keras.utils.load_img(
            f, color_mode=mode, target_size=size, interpolation="bilinear")) for f in files])
        assert ours.shape == theirs.shape == (len(files),) + size + (channels,)
        assert np.array_equal(ours, theirs)
    if channels == 1:        # a colour photo is not one of its own channels, but its luma
        colour = load_images(PHOTOS[:1], (71, 71), raw=True, channels=3)[0]
        luma = load_images(PHOTOS[:1], (71, 71), raw=True, channels=1)[0, 0]
        assert not any(np.array_equal(luma, c) for c in colour)


def test_a_folder_stands_for_its_images_and_its_subfolders_images(tmp_path):
    """xception-predict on a folder of class folders (evaluate's layout) predicts every image
    in it, sorted by path, instead of "folder has no images"; hidden files and folders are
    skipped, and a folder with none anywhere is refused naming it."""
    import shutil
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
