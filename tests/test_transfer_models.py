"""Users' own transfer-learning models (Xception base + head) convert to MXNet
checkpoints that compute what the Keras model computes (issue #12)."""
import json

import mxnet as mx
import numpy as np
import pytest

import transfer_models
from conftest import PHOTOS, run_tool
from convert import convert_file
from xception_mx import load_images
from xception_mx.serving import load_network

CASES = {   # name: (builder, file suffix)
    "nested-keras3.keras": (transfer_models.nested, ".keras"),
    "nested-keras3.h5": (transfer_models.nested, ".h5"),
    "flattened-150x200.keras": (transfer_models.flattened, ".keras"),
    "flattened-150x200.h5": (transfer_models.flattened, ".h5"),
    "sequential-keras3.keras": (transfer_models.sequential, ".keras"),
    "sequential-keras3.h5": (transfer_models.sequential, ".h5"),
    "nested-keras2.h5": (transfer_models.keras2_nested, ".h5"),
    "flattened-keras2.h5": (transfer_models.keras2_flattened, ".h5"),
}
_MODELS = {}


def keras_model(builder):
    if builder not in _MODELS:
        _MODELS[builder] = builder()
    return _MODELS[builder]


def inputs_for(model, preprocessed_inside):
    """The photos and random images at the model's input size, NHWC, as the
    model wants them: raw pixels, or Keras' x / 127.5 - 1."""
    height, width = model.input_shape[1:3]
    photos = load_images(PHOTOS, size=(height, width))            # x / 127.5 - 1, NCHW
    raw = np.concatenate([(photos + 1.0) * 127.5, np.random.RandomState(1).uniform(
        0, 255, (2, 3, height, width)).astype(np.float32)])
    x = raw if preprocessed_inside else raw / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_transfer_model_converts_to_the_same_function(case, tmp_path):
    builder, suffix = CASES[case]
    model = keras_model(builder)
    path = transfer_models.save(model, str(tmp_path / ("model" + suffix)))
    convert_file(path, str(tmp_path / "mx"))
    net, meta = load_network(str(tmp_path / "mx"))
    spec = meta["model"]["transfer"]
    assert meta["model"]["input_shape"] == list(model.input_shape[1:3])
    x = inputs_for(model, bool(spec["preprocess"]))
    expected = model.predict(x, verbose=0)
    got = net(mx.nd.array(x.transpose(0, 3, 1, 2))).asnumpy()
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() <= 1e-4 * scale, np.abs(got - expected).max()
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    if expected.shape[1] >= 5:
        top5 = np.argsort(-expected, axis=1)[:, :5]
        assert np.array_equal(np.argsort(-got, axis=1)[:, :5], top5)
    # the outputs differ between inputs: the comparison is not of constants
    assert np.abs(expected - expected.mean(0)).max() > 1e-3
    names = {row["mxnet_param"] for row in meta["name_table"]}
    params = set(mx.nd.load(str(tmp_path / "mx-0000.params")))
    assert {p.split(":", 1)[1] for p in params} - names <= {
        p.split(":", 1)[1] for p in params if p.endswith(("_gamma", "_beta"))}
    assert "fc1_weight" in names and "block1_conv1_weight" in names


def test_weights_of_head_layers_keep_keras_names(tmp_path):
    model = keras_model(transfer_models.nested)
    path = transfer_models.save(model, str(tmp_path / "m.keras"))
    convert_file(path, str(tmp_path / "mx"))
    meta = json.loads((tmp_path / "mx-meta.json").read_text())
    rows = {(r["keras_layer"], r["keras_weight"]): r["mxnet_param"] for r in meta["name_table"]}
    assert rows[("fc1", "kernel")] == "fc1_weight"
    assert rows[("fc1_bn", "moving_variance")] == "fc1_bn_running_var"
    assert rows[("out", "bias")] == "out_bias"
    assert rows[("block14_sepconv2_bn", "gamma")] == "block14_sepconv2_bn_gamma"
    assert meta["input"]["range"] == [0.0, 255.0]
    assert [op["op"] for op in meta["model"]["transfer"]["preprocess"]] == ["divide",
                                                                            "subtract"]


@pytest.mark.parametrize("edit, fragment", [
    ("lambda", "Lambda"),
    ("two_outputs", "2 outputs"),
])
def test_unsupported_models_are_refused_in_one_line(edit, fragment, tmp_path):
    keras = transfer_models.import_keras()
    layers = keras.layers
    base = keras.applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3))
    inputs = keras.Input((71, 71, 3))
    x = layers.GlobalAveragePooling2D()(base(inputs))
    if edit == "lambda":
        model = keras.Model(inputs, layers.Lambda(lambda t: t * 2, name="double")(x))
    else:
        model = keras.Model(inputs, [layers.Dense(2, name="a")(x), layers.Dense(3, name="b")(x)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    result = run_tool("keras2mxnet", path, "-o", tmp_path / "mx")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("mx*"))
