"""Models whose input is not RGB (issue #33): a grayscale Xception, whole or as a transfer
model's base, written by Keras 2 and Keras 3, converts, passes parity, predicts, fine-tunes
and goes back to Keras (images decode to one channel as Keras'
``load_img(color_mode="grayscale")`` does, colour or not: ``tests/images/test_decode.py``)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import own_models
from conftest import PHOTOS, assert_bad_input, run_tool
from xception_mx import load
from xception_mx.keras_side import import_keras

CASES = {   # name: (builder, file suffix, keras2mxnet options)
    "plain-keras3.keras": (own_models.grayscale_plain, ".keras", ["--input-shape", 71, 71]),
    "plain-keras3.weights.h5": (own_models.grayscale_plain, ".weights.h5",
                                ["--input-shape", 71, 71]),
    "plain-keras2.h5": (own_models.keras2_grayscale_plain, ".h5", ["--input-shape", 71, 71]),
    "transfer-keras3.keras": (own_models.grayscale_transfer, ".keras", []),
    "transfer-keras2.h5": (own_models.keras2_grayscale_transfer, ".h5", []),
}


def save_case(name, folder):
    builder, suffix, options = CASES[name]
    model = own_models.built(builder)
    path = str(folder / ("model" + suffix))
    if suffix == ".weights.h5":
        model.save_weights(path)
    else:
        own_models.save(model, path)
    return model, path, options


@pytest.fixture
def mixed_folder(tmp_path):
    """A class folder of grayscale PNGs and colour JPEGs (the photos)."""
    rng = np.random.RandomState(0)
    root = tmp_path / "images"
    for c, photo in enumerate(PHOTOS[:4]):
        folder = root / ("class%d" % c)
        folder.mkdir(parents=True)
        Image.open(photo).save(folder / "colour.jpg")
        for i in range(2):
            pixels = np.clip(rng.normal(60 * c + 20, 25, (50, 60)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / ("gray%d.png" % i))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_grayscale_model_converts_and_passes_parity(case, tmp_path):
    model, path, options = save_case(case, tmp_path)
    prefix = tmp_path / "mx"
    result = run_tool("keras2mxnet", path, "-o", prefix, *options)
    assert result.returncode == 0, result.stderr
    assert "input 1x%dx%d (grayscale)" % model.input_shape[1:3] in result.stdout
    meta = json.loads((tmp_path / "mx-meta.json").read_text())
    assert meta["model"]["channels"] == 1
    assert meta["input"]["shape"] == [1, 1] + list(model.input_shape[1:3])
    assert meta["input"]["color"] == "grayscale"
    parity = run_tool("xception-parity", "--keras", path, "--mxnet", prefix, *PHOTOS,
                      "--random", 2)
    assert parity.returncode == 0, parity.stdout + parity.stderr
    rows = [l for l in parity.stdout.splitlines() if l.startswith(("random[", "astronaut"))]
    assert len(rows) == 3 and "PASS" in parity.stdout


@pytest.mark.slow
def test_a_grayscale_model_predicts_and_fine_tunes_from_grayscale_and_colour_images(
        mixed_folder, tmp_path):
    keras = import_keras()
    model, path, _ = save_case("transfer-keras3.keras", tmp_path)
    prefix = tmp_path / "mx"
    assert run_tool("keras2mxnet", path, "-o", prefix).returncode == 0
    size = model.input_shape[1:3]
    fed = keras.utils.image_dataset_from_directory(      # what Keras' model.predict is fed
        str(mixed_folder), color_mode="grayscale", image_size=size, shuffle=False,
        verbose=False)
    files = fed.file_paths
    expected = model.predict(fed, verbose=0)
    got = load(str(prefix)).predict(files, top=4)
    for row, probabilities in zip(got, expected):
        assert [name for name, _ in row] == ["class %d" % i for i in np.argsort(-probabilities)]
        assert np.allclose([p for _, p in row], np.sort(probabilities)[::-1], atol=1e-5)

    run = tmp_path / "run"
    result = run_tool("xception-finetune", mixed_folder, "--pretrained", prefix, "--epochs", 1,
                      "--batch-size", 4, "--val-split", 0.25, "--out", run)
    assert result.returncode == 0, result.stderr
    meta = json.loads((run / "model-meta.json").read_text())
    assert meta["model"]["channels"] == 1 and meta["input"]["shape"][1] == 1
    predicted = run_tool("xception-predict", run / "model", *files[:3], "--top", 1)
    assert predicted.returncode == 0, predicted.stderr
    assert sum(l.strip().startswith("1.") for l in predicted.stdout.splitlines()) == 3
    back = tmp_path / "back.keras"
    assert run_tool("mxnet2keras", run / "model", "-o", back).returncode == 0
    parity = run_tool("xception-parity", "--keras", back, "--mxnet", run / "model", *files,
                      "--random", 1)
    assert parity.returncode == 0, parity.stdout + parity.stderr


@pytest.mark.slow
def test_a_channel_count_no_image_has_takes_arrays_and_refuses_image_files(tmp_path):
    model = own_models.grayscale_plain(channels=2)
    path = own_models.save(model, str(tmp_path / "two.keras"))
    prefix = tmp_path / "mx"
    assert run_tool("keras2mxnet", path, "-o", prefix, "--input-shape", 71, 71).returncode == 0
    x = np.random.RandomState(0).uniform(-1, 1, (3, 2, 71, 71)).astype(np.float32)
    expected = model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0)
    logits = load(str(prefix)).logits(x)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    assert np.abs(probabilities - expected).max() <= 1e-5
    result = run_tool("xception-predict", prefix, PHOTOS[0])
    assert_bad_input(result, os.path.basename(PHOTOS[0]),
                     "takes 2 input channels, which no image file holds")
