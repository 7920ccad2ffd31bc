"""xception-predict, xception-quantize and the fast paths on converted own models (issue
#12): the checkpoint's own input convention is fed and the model's own outputs shown.  The
models are the ``converted`` fixture's (conftest.py)."""
import re

import numpy as np
import pytest

import own_models
from conftest import DATA, PHOTOS, run_tool
from own_model_checkpoints import MODELS
from xception_mx.conversion import convert_file
import xception_mx
from xception_mx import load_images
from xception_mx.checkpoint.reading import read_meta


PREDICTION = re.compile(r"^\s+\d+\. ([0-9.]+)\s+class (\d+)$")


def predicted(stdout):
    """``{image: {class index: shown probability}}`` from xception-predict's output."""
    found, current = {}, None
    for line in stdout.splitlines():
        match = PREDICTION.match(line)
        if match:
            found[current][int(match.group(2))] = float(match.group(1))
        else:
            current = line.strip()
            found[current] = {}
    return found


@pytest.mark.parametrize("name", ["nested", "keras2_flattened"])
def test_predict_shows_what_the_keras_model_outputs_on_each_photo(name, converted):
    """Raw pixels for a model that preprocesses inside, x / 127.5 - 1 for one
    that does not; a softmax or sigmoid output shown as it is, not softmaxed."""
    model = own_models.built(MODELS[name][0])
    _, prefix = converted[name]
    classes = model.output_shape[-1]
    result = run_tool("xception-predict", prefix, *PHOTOS, "--top", classes)
    assert result.returncode == 0, result.stderr
    shown = predicted(result.stdout)
    raw = read_meta(prefix)["input"]["range"] == [0.0, 255.0]
    size = model.input_shape[1:3]
    x = load_images(PHOTOS, size, raw=raw).transpose(0, 2, 3, 1)
    expected = model.predict(np.ascontiguousarray(x), verbose=0)
    for path, keras_out in zip(PHOTOS, expected):
        ours = shown[path]
        assert sorted(ours) == list(range(classes)), result.stdout
        got = np.array([ours[i] for i in range(classes)])
        assert np.abs(got - keras_out).max() <= 1e-4, (path, got, keras_out)
        assert max(ours, key=ours.get) == int(np.argmax(keras_out))


def test_bf16_and_int8_paths_run_a_transfer_model_close_to_fp32(converted, tmp_path):
    """xception-quantize keeps the input convention and the head; bf16 and int8
    outputs stay near the fp32 ones (measured here: within 0.03)."""
    _, prefix = converted["nested"]
    quantized = tmp_path / "int8"
    result = run_tool("xception-quantize", prefix, "-o", quantized, "--calib-images", DATA)
    assert result.returncode == 0, result.stderr
    assert read_meta(str(quantized))["input"]["range"] == [0.0, 255.0]
    runs = {"fp32": run_tool("xception-predict", prefix, *PHOTOS, "--top", "6"),
            "bf16": run_tool("xception-predict", prefix, *PHOTOS, "--top", "6",
                             "--precision", "bf16"),
            "int8": run_tool("xception-predict", quantized, *PHOTOS, "--top", "6")}
    for run in runs.values():
        assert run.returncode == 0, run.stderr
    shown = {k: predicted(r.stdout) for k, r in runs.items()}
    for path in PHOTOS:
        reference = np.array([shown["fp32"][path][i] for i in range(6)])
        for precision in ("bf16", "int8"):
            got = np.array([shown[precision][path][i] for i in range(6)])
            assert np.abs(got - reference).max() <= 0.1, (precision, path, got, reference)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_fast_paths_run_a_head_with_a_chain_of_linear_activations(precision, tmp_path):
    """MXNet's oneDNN partitioner lost the input of two identities after a fused Dense(relu)
    ("needs parameter fc1_relu0_output0"); the fast paths read such chains from their start."""
    model = own_models.built(own_models.linear_activations)
    path = own_models.save(model, str(tmp_path / "m.keras"))
    convert_file(path, str(tmp_path / "mx"))
    x = load_images(PHOTOS, (71, 71))
    ours = xception_mx.load(str(tmp_path / "mx"), precision=precision).logits(x)
    keras_out = model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0)
    bound = 1e-4 if precision == "fp32" else 0.15 * np.abs(keras_out).max()
    assert np.abs(ours - keras_out).max() <= bound
