"""mxnet2keras: MXNet checkpoints back to Keras, bit-exactly."""
import os
import subprocess

import mxnet as mx
import numpy as np
import pytest

from conftest import BIN, PHOTOS, run_tool
from xception_mx.conversion import convert_file
from xception_mx.conversion.mxnet_to_keras import write_keras
from xception_mx import keras_side
from xception_mx.images.decode import load_images
from xception_mx.serving.loading import load_network, run_batches
from shapes_dataset import write_shapes_dataset

PAIRS = [("legacy-h5", ".h5"), ("legacy-model-h5", ".weights.h5"), ("weights-h5", ".keras"),
         ("keras", ".weights.h5")]


@pytest.mark.slow
@pytest.mark.parametrize("source, suffix", PAIRS)
def test_keras_to_mxnet_to_keras_gives_back_every_tensor(source, suffix, keras_files_top,
                                                         reference_model, tmp_path):
    prefix = str(tmp_path / "x")
    convert_file(keras_files_top[source], prefix, input_shape=(224, 224))
    out = str(tmp_path / ("back" + suffix))
    write_keras(prefix, out)
    back = keras_side.load_keras_model(out, True, 1000, input_shape=(224, 224))
    original, returned = reference_model.get_weights(), back.get_weights()
    assert len(original) == len(returned) == 236
    for a, b in zip(original, returned):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.slow
def test_finetuned_checkpoint_serves_in_keras_with_the_same_logits(keras_files_top, tmp_path):
    data = tmp_path / "data"
    write_shapes_dataset(str(data), per_class=6, seed=4, size=(80, 80))
    convert_file(keras_files_top["legacy-h5"], str(tmp_path / "x71"), input_shape=(71, 71))
    run = tmp_path / "run"
    tuned = subprocess.run([os.path.join(BIN, "xception-finetune"), str(data), "--out", str(run),
                            "--pretrained", str(tmp_path / "x71"), "--input-shape", "71", "71",
                            "--epochs", "1", "--batch-size", "6", "--workers", "0"],
                           capture_output=True, text=True, timeout=600)
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    result = run_tool("mxnet2keras", run / "model", "-o", tmp_path / "served.keras")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "served-labels.txt").read_text().split() == [
        "checkerboard", "horizontal_stripes", "vertical_stripes"]
    keras_model = keras_side.load_keras_model(str(tmp_path / "served.keras"), True, 3,
                                              input_shape=(71, 71))
    x = load_images(PHOTOS, (71, 71))
    net, _ = load_network(str(run / "model"), output="logits")
    mx_logits = run_batches(net, x)
    keras_logits = keras_side.keras_predict(keras_model, x)
    assert np.abs(mx_logits - keras_logits).max() <= 1e-4


def test_bad_input_is_refused_and_nothing_written(keras_files_top, tmp_path):
    prefix = str(tmp_path / "x")
    convert_file(keras_files_top["legacy-h5"], prefix, input_shape=(99, 99))
    cases = [
        ([tmp_path / "none", "-o", tmp_path / "a.keras"], "no such file"),
        ([prefix, "-o", tmp_path / "a.onnx"], "expected a .weights.h5, .h5 or .keras"),
        ([prefix, "-o", tmp_path / "missing" / "a.keras"], "output folder does not exist"),
    ]
    for args, fragment in cases:
        result = run_tool("mxnet2keras", *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("mxnet2keras: error: ") and fragment in lines[0]
    other = str(tmp_path / "other")
    mx.nd.save(other + "-0000.params", {"arg:conv0_weight": mx.nd.zeros((2, 2))})
    result = run_tool("mxnet2keras", other, "-o", tmp_path / "b.keras")
    assert result.returncode == 2 and "not an Xception checkpoint" in result.stderr
    (tmp_path / "exists.keras").write_text("keep")
    result = run_tool("mxnet2keras", prefix, "-o", tmp_path / "exists.keras")
    assert result.returncode == 2 and "--force" in result.stderr
    assert (tmp_path / "exists.keras").read_text() == "keep"
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".tmp", ".tmp.keras"))]
    assert not os.path.exists(tmp_path / "a.keras") and not os.path.exists(tmp_path / "b.keras")
