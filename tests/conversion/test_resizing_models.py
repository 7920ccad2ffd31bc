"""Models that resize or crop their input themselves (Keras ``Resizing``,
``CenterCrop`` before the base): the checkpoint resizes as TF does (bilinear,
half-pixel centres) and crops where Keras does, so it takes the model's own
input size, or any size when the model takes any; what MXNet cannot compute
the same way is refused in one line."""
import json

import mxnet as mx
import numpy as np
import pytest

import own_models
from conftest import assert_bad_input, run_tool
from xception_mx import keras_side
from xception_mx.serving.loading import load_network


def close(got, expected):
    """Within float32 rounding of a 71-layer network (measured: 1e-5 of the
    largest output), and the outputs differ between inputs (not constants)."""
    assert np.abs(expected[0] - expected[1]).max() > 1e-3
    return np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def assert_parity_passes(keras_path, prefix, size):
    """xception-parity passes, comparing at ``size`` (Keras rebuilt at that size)."""
    report = prefix.parent / (prefix.name + "-report.json")
    parity = run_tool("xception-parity", "--keras", keras_path, "--mxnet", prefix,
                      "--random", "2", "--report", report)
    assert parity.returncode == 0, parity.stdout[-2000:] + parity.stderr[-2000:]
    found = json.loads(report.read_text())
    assert found["passed"] and found["input_size"] == size


def back_in_keras(prefix):
    """The Keras model mxnet2keras writes from checkpoint ``prefix``."""
    path = prefix.parent / (prefix.name + "-back.keras")
    result = run_tool("mxnet2keras", prefix, "-o", path)
    assert result.returncode == 0, result.stderr
    return keras_side.load_user_model(str(path))


def assert_computes_alike(back, model, x):
    """The way back computes the original model's outputs (within 1e-5)."""
    expected = model.predict(x, verbose=0)
    assert np.abs(back.predict(x, verbose=0) - expected).max() <= 1e-5 * max(
        1.0, float(np.abs(expected).max()))


def test_a_model_that_takes_any_size_and_resizes_converts_at_its_resizing_size_or_below_71(
        tmp_path):
    """Its base computes at the Resizing's 80x90 whatever the input: converted by default
    at 80x90, or at 30x45 (smaller than Xception's 71x71 minimum) when asked; Keras'
    preprocessed input convention (nothing rescales inside); the way back is a Keras model
    that takes any size and holds the same Resizing."""
    model = own_models.built(own_models.any_size_resizing)
    assert model.input_shape == (None, None, None, 3)
    path = own_models.save(model, str(tmp_path / "m.keras"))
    rng = np.random.RandomState(5)
    for size in [None, (30, 45)]:
        prefix = tmp_path / ("mx%s" % (size and size[0]))
        flags = ["--input-shape", str(size[0]), str(size[1])] if size else []
        result = run_tool("keras2mxnet", path, "-o", prefix, *flags)
        assert result.returncode == 0, result.stderr
        height, width = size or (80, 90)
        assert "input 3x%dx%d (the model takes any size" % (height, width) in result.stdout
        assert ("80x90 at the base (the model resizes" in result.stdout) == (size is not None)
        net, meta = load_network(str(prefix))
        assert meta["model"]["input_shape"] == [height, width]
        assert meta["input"]["range"] == [-1.0, 1.0]
        assert "resize to 80x90 (bilinear)" in meta["input"]["scale"]
        x = rng.uniform(-1, 1, (2, height, width, 3)).astype(np.float32)
        expected = model.predict(x, verbose=0)
        assert close(net(mx.nd.array(x.transpose(0, 3, 1, 2))).asnumpy(), expected)
    assert_parity_passes(path, tmp_path / "mx30", [30, 45])
    back = back_in_keras(tmp_path / "mxNone")
    assert back.input_shape == (None, None, None, 3)
    resizing = back.get_layer("to_base_size")
    assert type(resizing).__name__ == "Resizing"
    assert (resizing.height, resizing.width) == (80, 90)
    assert_computes_alike(back, model, rng.uniform(-1, 1, (2, 50, 33, 3)).astype(np.float32))


def test_the_imagenet_evaluation_transform_inside_a_model_converts_at_any_size(tmp_path):
    """Resizing to 90x100 then CenterCrop to 75x80 (in a Sequential, after augmentation):
    converted at the crop's size by default, at 150x120 (downsampled) and 40x300 (stretched)
    when asked, each giving Keras' outputs; xception-parity compares at 150x120; mxnet2keras
    gives back both layers, named, with the same outputs."""
    model = own_models.built(own_models.evaluation_crop)
    path = own_models.save(model, str(tmp_path / "m.keras"))
    rng = np.random.RandomState(6)
    for size in [None, (150, 120), (40, 300)]:
        prefix = tmp_path / ("mx%s" % (size and size[0]))
        flags = ["--input-shape", str(size[0]), str(size[1])] if size else []
        result = run_tool("keras2mxnet", path, "-o", prefix, *flags)
        assert result.returncode == 0, result.stderr
        net, meta = load_network(str(prefix))
        height, width = size or (75, 80)
        assert meta["model"]["input_shape"] == [height, width]
        assert "resize to 90x100 (bilinear), then center crop to 75x80" in meta["input"]["scale"]
        x = rng.uniform(0, 255, (2, height, width, 3)).astype(np.float32)
        expected = model.predict(x, verbose=0)
        assert close(net(mx.nd.array(x.transpose(0, 3, 1, 2))).asnumpy(), expected)
    assert_parity_passes(path, tmp_path / "mx150", [150, 120])
    back = back_in_keras(tmp_path / "mx150")
    crop = back.get_layer("crop")
    assert type(crop).__name__ == "CenterCrop" and (crop.height, crop.width) == (75, 80)
    assert type(back.get_layer("resize_larger")).__name__ == "Resizing"
    assert_computes_alike(back, model, rng.uniform(0, 255, (2, 150, 120, 3)).astype(np.float32))


def test_a_center_crop_larger_than_its_input_is_refused_in_one_line(tmp_path):
    """Keras resizes an input smaller than the crop (smart_resize) instead of cropping: not
    computed here, so refused, for the size the model declares and for --input-shape."""
    keras = own_models.import_keras()
    base = keras.applications.Xception(weights=None, include_top=False,
                                       input_shape=(None, None, 3))
    for declared, asked in [((72, 90), None), ((None, None), (100, 70))]:
        inputs = keras.Input(declared + (3,))
        x = keras.layers.CenterCrop(80, 80, name="crop_me")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(base(x))
        path = str(tmp_path / "m.keras")
        keras.Model(inputs, keras.layers.Dense(2, name="out")(x)).save(path)
        flags = ["--input-shape", str(asked[0]), str(asked[1])] if asked else []
        result = run_tool("keras2mxnet", path, "-o", tmp_path / "mx", *flags)
        size = "%dx%d" % (asked or declared)
        assert_bad_input(result, "layer 'crop_me' (CenterCrop) crops 80x80 from a %s image"
                         % size, "smaller one instead, which is not supported")
        if asked:
            assert "--input-shape" in result.stderr
        assert not list(tmp_path.glob("mx*"))


def _resizing_model(keras, **options):
    base = keras.applications.Xception(weights=None, include_top=False,
                                       input_shape=(None, None, 3))
    inputs = keras.Input((64, 64, 3))
    size = options.pop("size", (71, 71))
    x = keras.layers.Resizing(*size, name="resize_me", **options)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(base(x))
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


@pytest.mark.parametrize("options, fragments", [
    ({"interpolation": "nearest"}, ["interpolation 'nearest' is not supported",
                                    "supported: bilinear"]),
    ({"interpolation": "bicubic"}, ["interpolation 'bicubic'"]),
    ({"crop_to_aspect_ratio": True}, ["crop_to_aspect_ratio=True is not supported"]),
    ({"pad_to_aspect_ratio": True}, ["pad_to_aspect_ratio=True is not supported"]),
    ({"antialias": True}, ["antialias=True is not supported"]),
    ({"size": (32, 48)}, ["gives 32x48 images", "needs height and width >= 71"]),
], ids=["nearest", "bicubic", "crop", "pad", "antialias", "too-small"])
def test_a_resizing_the_checkpoint_cannot_compute_alike_is_refused_in_one_line(
        options, fragments, tmp_path):
    model = _resizing_model(own_models.import_keras(), **options)
    path = str(tmp_path / "m.keras")
    model.save(path)
    result = run_tool("keras2mxnet", path, "-o", tmp_path / "mx")
    assert_bad_input(result, "m.keras", "layer 'resize_me' (Resizing)", *fragments)
    assert not list(tmp_path.glob("mx*"))
