"""xception-parity on converted own models (issue #12): it loads the user's whole Keras
model (a Keras 2 file through tf-keras) and compares the outputs and every layer, head
included.  The models are the ``converted`` fixture's (conftest.py)."""
import json

import mxnet as mx
import numpy as np
import pytest

import own_models
from conftest import DATA, PHOTOS, assert_bad_input, failure_output, run_tool
from own_model_checkpoints import MODELS
from xception_mx.conversion import convert_file
from xception_mx.model.training_only import inference_layers
from xception_mx.checkpoint.files import write_checkpoint
from xception_mx.checkpoint.reading import load_params, load_symbol, read_meta
from xception_mx.serving.loading import load_network


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parity_compares_outputs_and_every_layer_of_a_transfer_model(name, converted,
                                                                      tmp_path):
    path, prefix = converted[name]
    report = tmp_path / "report.json"
    result = run_tool("xception-parity", "--keras", path, "--mxnet", prefix, DATA,
                      "--random", "2", "--per-layer", "--report", report)
    assert result.returncode == 0, failure_output(result)
    found = json.loads(report.read_text())
    assert found["passed"] and found["first_divergent_layer"] is None
    assert len(found["inputs"]) == len(PHOTOS) + 2
    assert all(r["max_abs"] <= 1e-4 and r["top1"] for r in found["inputs"])
    spec = read_meta(prefix)["model"]["transfer"]
    raw = bool(spec["preprocess"])
    assert found["input_range"] == ([0.0, 255.0] if raw else [-1.0, 1.0])
    layers = [r["keras_layer"] for r in found["layers"]]
    head = [layer["name"] for layer in inference_layers(spec["head"])]   # Dropout: the identity
    assert layers[-len(head):] == head
    assert {"block1_conv1", "block7_sepconv3_bn", "block14_sepconv2_act"} <= set(layers)
    assert len(layers) >= 125 + len(head)
    if raw:           # what enters the base, after preprocess_input's subtraction
        assert "subtract" in layers[0]
        assert found["layers"][0]["shape"] == [71, 71, 3]       # after a Resizing too


def test_parity_runs_a_mixed_precision_model_in_float32_and_says_so(tmp_path):
    model = own_models.built(own_models.mixed_precision)
    path = own_models.save(model, str(tmp_path / "mixed.keras"))
    convert_file(path, str(tmp_path / "mx"))
    report = tmp_path / "report.json"
    result = run_tool("xception-parity", "--keras", path, "--mxnet", tmp_path / "mx", DATA,
                      "--random", "2", "--report", report)
    assert result.returncode == 0, failure_output(result)
    assert "computes in mixed_float16; compared in float32" in result.stdout
    found = json.loads(report.read_text())
    assert found["keras_policy"] == "float32 (the file's mixed_float16)"
    assert all(r["max_abs"] <= 1e-4 for r in found["inputs"])
    # what the note is about: Keras' own float16 computation is not within 1e-4
    x = np.random.RandomState(0).uniform(-1, 1, (2, 71, 71, 3)).astype(np.float32)
    net = load_network(str(tmp_path / "mx"))[0]
    got = net(mx.nd.array(x.transpose(0, 3, 1, 2))).asnumpy()
    assert np.abs(model.predict(x, verbose=0) - got).max() > 1e-4


def test_parity_names_the_head_layer_a_damaged_checkpoint_gets_wrong(converted, tmp_path):
    path, prefix = converted["nested"]
    arg_params, aux_params = load_params(prefix, 0)
    aux = {k: v.asnumpy() for k, v in aux_params.items()}
    aux["fc1_bn_running_mean"] = aux["fc1_bn_running_mean"] + 0.5
    damaged = str(tmp_path / "damaged")
    write_checkpoint(damaged, load_symbol(prefix), {k: v.asnumpy() for k, v in
                                                    arg_params.items()}, aux, read_meta(prefix))
    report = tmp_path / "report.json"
    result = run_tool("xception-parity", "--keras", path, "--mxnet", damaged, "--random", "2",
                      "--per-layer", "--report", report)
    assert result.returncode == 1, result.stderr
    assert "FAIL" in result.stdout
    assert json.loads(report.read_text())["first_divergent_layer"] == "fc1_bn"


def test_parity_refuses_a_keras_file_of_another_model(converted):
    other, _ = converted["keras2_nested"]
    _, prefix = converted["nested"]
    assert_bad_input(run_tool("xception-parity", "--keras", other, "--mxnet", prefix,
                              "--random", "1"), other, "not the model", "head step 1",
                     "GlobalMaxPooling2D", "GlobalAveragePooling2D")


def test_parity_says_keras_cannot_read_its_own_h5_with_preprocess_input(converted, tmp_path):
    """Keras 3 writes preprocess_input's operations into .h5 files it cannot
    load back; keras2mxnet reads them, xception-parity says why it cannot."""
    path = own_models.save(own_models.built(own_models.nested),
                                str(tmp_path / "nested.h5"))
    convert_file(path, str(tmp_path / "mx"))
    assert_bad_input(run_tool("xception-parity", "--keras", path, "--mxnet", tmp_path / "mx",
                              "--random", "1"), "nested.h5", "Keras itself cannot load",
                     "TrueDivide", "save the model as .keras")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parity_reads_the_architecture_without_the_weights(name, converted):
    """Parity checks the Keras file's architecture before Keras loads it (weights and all):
    the look reads the same architecture and no weight."""
    from xception_mx.conversion.keras_reader import read_keras_file
    from xception_mx.conversion.own_model.keras_config import model_config
    path, _ = converted[name]
    look, whole = read_keras_file(path, weights=False), read_keras_file(path)
    assert look.layers == [] and whole.layers
    assert model_config(look) == model_config(whole) is not None
    assert look.attrs.get("keras_version") == whole.attrs.get("keras_version")


def test_parity_of_a_checkpoint_converted_at_another_size_than_declared(converted, tmp_path):
    """keras2mxnet --input-shape 99 120 on a 71x71 model: parity rebuilds the
    Keras model at 99x120 (same config and weights) to compare."""
    path, _ = converted["keras2_nested"]
    convert_file(path, str(tmp_path / "mx"), input_shape=(99, 120))
    report = tmp_path / "report.json"
    result = run_tool("xception-parity", "--keras", path, "--mxnet", tmp_path / "mx", DATA,
                      "--random", "2", "--report", report)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = json.loads(report.read_text())
    assert found["passed"] and found["input_size"] == [99, 120]
