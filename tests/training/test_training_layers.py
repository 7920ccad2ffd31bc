"""The Keras model's training-time layers act in training (issue #28): Dropout and its kin at
the file's rates, the augmentation layers with the file's parameters, as Keras computes them;
inference, symbols and exports unchanged; a run and its resume draw the same numbers."""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import own_models
from conftest import PHOTOS, run_tool
from xception_mx.model import augmentation as aug
from xception_mx.model.regularizers import Regularizer
from xception_mx.model.own_model import network_symbol
from xception_mx.training.own_model_training import build_own_model_network

# Measured: 3.2e-4 of a 0..255 pixel between TF's sampler and MXNet's BilinearSampler
# (float32 coordinate arithmetic); a misplaced centre or fill rule is off by whole pixels.
PIXEL_ATOL = 5e-3


def _keras_layers(keras):
    layers = keras.layers
    for fill in aug.FILL_MODES:
        for interpolation in aug.INTERPOLATIONS:
            sampling = dict(fill_mode=fill, interpolation=interpolation, fill_value=7.0, seed=1)
            yield layers.RandomRotation(0.3, **sampling)
            yield layers.RandomZoom(0.4, (-0.3, 0.5), **sampling)
            yield layers.RandomTranslation(0.4, 0.6, **sampling)
    yield layers.RandomContrast(0.5, seed=2)
    yield layers.RandomBrightness(0.3, seed=2)
    yield layers.RandomFlip("horizontal_and_vertical", seed=3)
    yield layers.RandomFlip("vertical", seed=3)


def _our_parameters(layer, drawn, height, width):
    """Keras' draw ``drawn`` of ``layer`` as ``augmentation.draw_parameters`` gives them."""
    cls, nd = type(layer).__name__, lambda a: mx.nd.array(np.asarray(a, np.float32).reshape(-1))
    if cls == "RandomRotation":
        return {"degrees": nd(drawn["angle"])}
    if cls == "RandomZoom":
        return {"height_zoom": nd(drawn["height_zoom"]), "width_zoom": nd(drawn["width_zoom"])}
    if cls == "RandomTranslation":
        shifts = np.asarray(drawn["translations"])
        return {"width_shift": nd(shifts[:, 0] / width), "height_shift": nd(shifts[:, 1] / height)}
    if cls == "RandomContrast":
        return {"contrast": nd(drawn["contrast_factor"])}
    if cls == "RandomBrightness":
        return {"delta": nd(np.asarray(drawn["rgb_delta"]) / 255.0)}
    flips = nd(drawn["flips"])
    return {"horizontal": flips if layer.mode != "vertical" else None,
            "vertical": flips if layer.mode != "horizontal" else None}


def test_each_augmentation_transforms_as_keras_does_on_keras_draws():
    from xception_mx.keras_side import import_keras
    keras = import_keras()
    images = (np.random.RandomState(0).rand(4, 13, 10, 3) * 255).astype(np.float32)
    batch = mx.nd.array(images.transpose(0, 3, 1, 2))
    for layer in _keras_layers(keras):
        op = aug.augmentation_op(type(layer).__name__, layer.name, layer.get_config())
        drawn = layer.get_random_transformation(images, training=True)
        theirs = np.asarray(layer.transform_images(images, drawn, training=True))
        ours = aug.augment(op, batch, _our_parameters(layer, drawn, 13, 10)).asnumpy()
        assert np.abs(ours.transpose(0, 2, 3, 1) - theirs).max() < PIXEL_ATOL, layer.get_config()


def test_draws_span_the_ranges_the_file_gives():
    n, ctx = 4000, mx.cpu()
    mx.random.seed(5)
    rotation = aug.augmentation_op("RandomRotation", "r", {"factor": [-0.2, 0.1]})
    degrees = aug.draw_parameters(rotation, n, ctx)["degrees"].asnumpy()
    assert -72.0 <= degrees.min() < -71.0 and 35.0 < degrees.max() <= 36.0
    zoom = aug.draw_parameters(aug.augmentation_op("RandomZoom", "z", {"height_factor": 0.2}),
                               n, ctx)
    assert zoom["width_zoom"] is zoom["height_zoom"]          # one zoom for both sides
    assert 0.8 <= zoom["height_zoom"].asnumpy().min() < 0.81
    contrast = aug.augmentation_op("RandomContrast", "c", {"factor": [0, 0.2]})     # Keras 3
    assert contrast["contrast"] == [1.0, 1.2]
    keras2_contrast = aug.augmentation_op("RandomContrast", "c", {"factor": 0.2})
    assert keras2_contrast["contrast"] == [0.8, 1.2]
    both = aug.augmentation_op("RandomFlip", "f", {"mode": "horizontal_and_vertical"})
    shared = aug.draw_parameters(both, n, ctx)
    assert shared["horizontal"] is shared["vertical"]                            # Keras 3
    assert abs(shared["horizontal"].asnumpy().mean() - 0.5) < 0.04
    apart = aug.draw_parameters(dict(both, draws="independent"), n, ctx)         # Keras 2
    together = (apart["horizontal"] == apart["vertical"]).asnumpy().mean()
    assert abs(together - 0.5) < 0.04


def _regularizer(entry, x):
    block = Regularizer(entry, on_feature_map=x.ndim == 4)
    block.initialize()
    with autograd.record(train_mode=True):
        trained = block(x)
    return trained.asnumpy(), block(x).asnumpy()


def test_regularizers_act_in_training_at_the_files_rates_and_are_the_identity_otherwise():
    mx.random.seed(3)
    x = mx.nd.random.uniform(1, 2, shape=(64, 16, 6, 6))      # 1024 channel masks
    for entry in ({"class": "Dropout", "name": "d", "rate": 0.5, "noise_shape": None},
                  {"class": "SpatialDropout2D", "name": "s", "rate": 0.5},
                  {"class": "Dropout", "name": "n", "rate": 0.5, "noise_shape": [None, 1, 1, 16]}):
        trained, inferred = _regularizer(entry, x)
        assert np.array_equal(inferred, x.asnumpy())
        kept = trained != 0
        assert abs(kept.mean() - 0.5) < 0.06           # 4 sigma of 1024 draws
        assert np.allclose(trained[kept], 2 * x.asnumpy()[kept], rtol=1e-6)
        if entry["name"] != "d":        # whole channels: one mask over H and W
            assert (kept.all(axis=(2, 3)) | ~kept.any(axis=(2, 3))).all()
    v = mx.nd.random.uniform(-1, 1, shape=(20000, 8))
    noise = _regularizer({"class": "GaussianNoise", "name": "g", "stddev": 0.3}, v)[0]
    assert abs((noise - v.asnumpy()).std() - 0.3) < 0.01
    gaussian = _regularizer({"class": "GaussianDropout", "name": "g", "rate": 0.2}, v)[0]
    assert abs((gaussian / v.asnumpy()).std() - 0.5) < 0.02          # sqrt(0.2 / 0.8)
    selu = mx.nd.random.normal(0, 1, shape=(20000, 8))
    alpha = _regularizer({"class": "AlphaDropout", "name": "a", "rate": 0.3,
                          "noise_shape": None}, selu)[0]
    assert abs(alpha.mean()) < 0.03 and abs(alpha.std() - 1.0) < 0.03      # keeps N(0, 1)
    values, counts = np.unique(alpha, return_counts=True)
    assert abs(counts.max() / alpha.size - 0.3) < 0.02                     # dropped: one value
    assert abs(values[counts.argmax()] - -1.0596) < 1e-3      # a * alpha_p + b at rate 0.3


def _converted(tmp_path):
    path = own_models.save(own_models.built(own_models.training_layers),
                                str(tmp_path / "m.keras"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    return path, json.loads((tmp_path / "mx-meta.json").read_text())


def _class_folder(root):
    for c in range(3):
        (root / ("c%d" % c)).mkdir(parents=True)
        for i, photo in enumerate(PHOTOS[c:c + 2]):
            (root / ("c%d" % c) / ("%d.jpg" % i)).write_bytes(open(photo, "rb").read())
    return root


@pytest.mark.slow
def test_dropout_half_zeroes_its_training_activations_and_leaves_inference_alone(tmp_path):
    _, meta = _converted(tmp_path)
    spec = meta["model"]["transfer"]
    net = build_own_model_network(spec, 3, (71, 71), [mx.cpu()], str(tmp_path / "mx"))[0]
    seen = {}
    drop = [b for b in net.head if b.prefix == "drop_"][0]
    hook = drop.register_forward_hook(lambda block, inputs, output: seen.update(
        x=inputs[0].asnumpy(), y=output.asnumpy()))
    pixels = mx.nd.random.uniform(0, 255, shape=(16, 3, 71, 71))
    with autograd.record(train_mode=True):
        net(pixels)
    live = seen["x"] != 0
    dropped = (seen["y"] == 0) & live
    assert abs(dropped.sum() / live.sum() - 0.5) < 0.05                # Dropout(0.5)
    assert np.allclose(seen["y"][~dropped & live], 2 * seen["x"][~dropped & live], rtol=1e-5)
    first = net(pixels).asnumpy()                                       # inference: no draws
    assert np.array_equal(first, net(pixels).asnumpy())
    assert np.array_equal(seen["x"], seen["y"])
    hook.detach()
    symbol = network_symbol(net).tojson()
    assert "Dropout" not in symbol and "random" not in symbol and "Sampler" not in symbol


@pytest.mark.slow
def test_a_run_with_training_layers_resumes_exactly_and_its_export_predicts_unchanged(tmp_path):
    keras_path, _ = _converted(tmp_path)
    data = _class_folder(tmp_path / "data")
    common = ("--pretrained", tmp_path / "mx", "--batch-size", 3, "--workers", 0,
              "--input-shape", 71, 71, "--optimizer", "keras-sgd", "--lr", 0.01)
    whole = run_tool("xception-finetune", data, *common, "--epochs", 2, "--out", tmp_path / "a")
    assert whole.returncode == 0, whole.stderr
    assert "the model augments its images (flip, rotation, zoom, shift, contrast, " \
        "brightness)" in whole.stdout
    assert "the pipeline's random crop and flip are off" in whole.stdout
    for extra in (("--stop-after", 1), ("--resume",)):
        part = run_tool("xception-finetune", data, *common, "--epochs", 2, "--out",
                        tmp_path / "b", *extra)
        assert part.returncode == 0, part.stderr
    a, b = (mx.nd.load(str(tmp_path / run / "model-0000.params")) for run in ("a", "b"))
    assert all(np.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a)
    start = mx.nd.load(str(tmp_path / "mx-0000.params"))
    assert not np.array_equal(a["arg:fc1_weight"].asnumpy(),
                              start["arg:fc1_weight"].asnumpy())
    # inference unchanged: nothing trained (a learning rate too small to move a float32
    # weight, statistics frozen), the export predicts as the converted checkpoint, however
    # the training-time layers acted
    still = run_tool("xception-finetune", data, *common[:-1], 1e-30, "--freeze-bn", "--epochs", 1,
                     "--out", tmp_path / "c")
    assert still.returncode == 0, still.stderr
    (tmp_path / "names.txt").write_text("x\ny\nz\n")
    before, after = (run_tool("xception-predict", prefix, *PHOTOS, "--top", 3, "--labels",
                              tmp_path / "names.txt")
                     for prefix in (tmp_path / "mx", tmp_path / "c" / "model"))
    assert before.returncode == after.returncode == 0, after.stderr
    assert before.stdout == after.stdout and before.stdout.count(". 0.") == 3 * len(PHOTOS)
    exported = json.loads((tmp_path / "c" / "model-meta.json").read_text())["model"]["transfer"]
    assert [l["class"] for l in exported["head"]].count("Dropout") == 1    # kept for a next run
    parity = run_tool("xception-parity", "--keras", keras_path, "--mxnet", tmp_path / "c" / "model",
                      *PHOTOS[:2])
    assert parity.returncode == 0, parity.stdout + parity.stderr


@pytest.mark.slow
def test_mxnet2keras_gives_the_training_time_layers_back_with_their_settings(tmp_path):
    _, meta = _converted(tmp_path)
    result = run_tool("mxnet2keras", tmp_path / "mx", "-o", tmp_path / "back.keras")
    assert result.returncode == 0, result.stderr
    assert run_tool("keras2mxnet", tmp_path / "back.keras", "-o", tmp_path / "again").returncode == 0
    again = json.loads((tmp_path / "again-meta.json").read_text())["model"]["transfer"]
    spec = meta["model"]["transfer"]
    for part in ("preprocess", "head"):
        assert again[part] == spec[part]
