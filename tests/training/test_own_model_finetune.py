"""xception-finetune on converted own models (issue #12): the head phase, the frozen base,
padded channels, learning, resuming and exporting the model with its own output.  The
models are the ``converted`` fixture's (conftest.py)."""
import json

import mxnet as mx
import numpy as np
import pytest

from conftest import assert_bad_input, run_tool
from rounding import assert_within_rounding, deviation
from xception_mx.model.training_only import inference_layers
from xception_mx.checkpoint.reading import read_meta


def test_finetune_head_phase_keeps_the_base_and_its_statistics_and_trains_the_head(
        converted, shapes, tmp_path):
    """The guide's model (6 classes) on the 3-class synthetic set: only the last
    Dense is replaced; while the base is frozen it keeps its weights and its
    BatchNorm statistics (inference mode), and the head's layers train."""
    _, prefix = converted["nested"]
    out = tmp_path / "run"
    result = run_tool("xception-finetune", shapes / "train", "--out", out, "--pretrained",
                      prefix, "--epochs", "1", "--freeze-base-epochs", "1", "--batch-size", "16",
                      "--workers", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "head new" in result.stdout
    start = {k.split(":", 1)[1]: v.asnumpy() for k, v in
             mx.nd.load(prefix + "-0000.params").items()}
    after = {k: v.asnumpy() for k, v in mx.nd.load(str(out / "epoch-0001.params")).items()}
    for name in ("block1_conv1_weight", "block14_sepconv2_bn_gamma",
                 "block1_conv1_bn_running_mean", "block14_sepconv2_bn_running_var"):
        assert np.array_equal(after[name], start[name]), name
    for name in ("fc1_weight", "fc1_bn_gamma", "fc1_bn_running_mean"):
        assert np.abs(after[name] - start[name]).max() > 1e-6, name
    assert after["out_weight"].shape == (3, 32)


def test_a_frozen_base_computes_in_training_what_it_computes_at_inference(converted):
    """The head phase trains the head on the features the base gives at inference, as Keras
    runs a frozen base.  The running statistics cannot show it (MXNet moves them in backward,
    which a frozen base never gets), so the features are compared: in a training pass with
    the base set to inference they equal the inference features; with batch statistics they
    would not."""
    from mxnet import autograd
    from xception_mx.checkpoint.reading import read_meta
    from xception_mx.training.own_model_training import (build_own_model_network,
                                                        pretrained_own_model_spec,
                                                        set_base_inference)
    _, prefix = converted["nested"]
    size = read_meta(prefix).input_size()
    net = build_own_model_network(pretrained_own_model_spec(prefix), 3, size, [mx.cpu()],
                                 prefix)[0]
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (4, 3) + tuple(size)))
    inference = net.base(x).asnumpy()
    scale = max(1.0, np.abs(inference).max())

    def in_training():
        with autograd.record(train_mode=True):
            return net.base(x).asnumpy()
    set_base_inference(net, True)
    assert np.abs(in_training() - inference).max() / scale <= 1e-5
    set_base_inference(net, False)
    assert np.abs(in_training() - inference).max() / scale > 1e-2   # batch statistics


def test_a_padded_transfer_model_trains_the_same_function(converted):
    """Its base's 728 channels padded to 736 (issue #13): the same outputs in a training
    pass and the same gradients, within the rounding of the batch in another order."""
    from mxnet import gluon
    from xception_mx.model.padding import BLOCK
    from xception_mx.checkpoint.reading import read_meta
    from xception_mx.training.train import forward_backward
    from xception_mx.training.own_model_training import (build_own_model_network,
                                                        pretrained_own_model_spec)
    _, prefix = converted["nested"]
    size = read_meta(prefix).input_size()
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.uniform(0, 255, (4, 3) + tuple(size)))
    y = mx.nd.array([0, 1, 2, 0])
    runs = {}
    for name, block, order in (("plain", None, [0, 1, 2, 3]), ("padded", BLOCK, [0, 1, 2, 3]),
                               ("reversed", None, [3, 2, 1, 0])):
        net, _, _, shapes = build_own_model_network(pretrained_own_model_spec(prefix), 3, size,
                                                   [mx.cpu()], prefix, channel_block=block)
        index = mx.nd.array(order)
        _, outputs = forward_backward(net, gluon.loss.SoftmaxCrossEntropyLoss(), x[index],
                                      y[index], [mx.cpu()])
        params = net.collect_params()
        runs[name] = (outputs[0].asnumpy()[np.argsort(order)], {
            n: params[n].grad().asnumpy()[tuple(slice(0, k) for k in shapes.keras_shape(
                n, params[n]))] for n in params if params[n].grad_req != "null"})
        assert bool(shapes) == (block is not None)
    plain, padded, reversed_ = runs["plain"], runs["padded"], runs["reversed"]
    # A fixed 1e-5 held on one CPU's kernels only (1.4e-5 with oneDNN capped at AVX512_MIC):
    # outputs too are bounded by this run's rounding (norm-wise, rounding.py).
    outputs = [{"outputs": run[0]} for run in (padded, plain, reversed_)]
    assert_within_rounding(deviation(outputs[0], outputs[1]),
                           deviation(outputs[2], outputs[1]), "outputs")
    rounding = deviation(reversed_[1], plain[1])
    assert_within_rounding(deviation(padded[1], plain[1]), rounding, "gradients")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from shapes_dataset import write_shapes_dataset
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(str(root / "train"), per_class=30, seed=0)
    write_shapes_dataset(str(root / "val"), per_class=10, seed=1)
    return root


def assert_export_predicts_vertical_stripes(export, shapes):
    """xception-predict with the export puts at least 2 of 3 validation stripes first."""
    stripes = sorted((shapes / "val" / "vertical_stripes").iterdir())[:3]
    predicted = run_tool("xception-predict", export, *stripes, "--top", "1")
    assert predicted.returncode == 0, predicted.stderr
    top1 = [line.split(None, 2)[2] for line in predicted.stdout.splitlines()
            if line.startswith(" ")]
    assert len(top1) == 3 and top1.count("vertical_stripes") >= 2, predicted.stdout


@pytest.mark.slow
def test_finetune_of_a_transfer_model_learns_and_exports_the_model_with_its_own_output(
        converted, shapes, tmp_path):
    """The export is the transfer model again: raw pixels in, softmax out.
    (Frozen statistics and a small rate, as the keras.io guide fine-tunes: the
    seeded head's BatchNorm statistics do not fit the synthetic images.)  The model's own
    RandomFlip and RandomRotation(0.1) and its Dropout act, the pipeline's crop and flip do
    not: six epochs, where four sufficed before they acted."""
    _, prefix = converted["nested"]
    out = tmp_path / "run"
    result = run_tool("xception-finetune", shapes / "train", "--val", shapes / "val", "--out",
                      out, "--pretrained", prefix, "--epochs", "6", "--freeze-base-epochs", "1",
                      "--batch-size", "16", "--lr", "0.001", "--freeze-bn")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the model augments its images" in result.stdout
    best = json.loads((out / "best.json").read_text())
    assert best["metrics"]["val_top1"] >= 0.9, best
    meta = read_meta(str(out / "model"))
    head = meta["model"]["transfer"]["head"]
    pretrained = read_meta(prefix)["model"]["transfer"]["head"]
    assert [l["name"] for l in head] == [l["name"] for l in pretrained]
    assert [l["name"] for l in inference_layers(head)][1:] == ["fc1", "fc1_bn", "out"]
    assert [l["class"] for l in head].count("Dropout") == 1          # kept for a next run
    assert head[-1]["units"] == 3 and head[-1]["activation"] == "softmax"
    assert meta["input"]["range"] == [0.0, 255.0] and meta["model"]["input_shape"] == [71, 71]
    assert_export_predicts_vertical_stripes(out / "model", shapes)


@pytest.mark.slow
def test_finetune_of_a_model_that_resizes_inside_trains_below_71_pixels_and_exports_it(
        converted, shapes, tmp_path):
    """The model's own Resizing sets the size its base computes at, so the run may take
    --input-shape 64 80 (below Xception's 71x71): images cropped to 64x80, resized to
    71x71 inside; the export takes 64x80 and resizes as the Keras model does."""
    _, prefix = converted["keras2_resizing"]
    out = tmp_path / "run"
    result = run_tool("xception-finetune", shapes / "train", "--val", shapes / "val", "--out",
                      out, "--pretrained", prefix, "--epochs", "4", "--freeze-base-epochs", "1",
                      "--batch-size", "16", "--min-crop", "0.3", "--lr", "0.001",
                      "--freeze-bn", "--input-shape", "64", "80")
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads((out / "best.json").read_text())
    assert best["metrics"]["val_top1"] >= 0.9, best
    meta = read_meta(str(out / "model"))
    assert meta["model"]["input_shape"] == [64, 80] and meta["input"]["shape"] == [1, 3, 64, 80]
    assert meta["input"]["range"] == [0.0, 255.0]
    resize = meta["model"]["transfer"]["preprocess"][0]
    assert resize["op"] == "resize" and resize["size"] == [71, 71]
    assert_export_predicts_vertical_stripes(out / "model", shapes)


def test_finetune_of_a_keras2_model_resumes_after_a_stop_and_exports_it(converted, shapes,
                                                                       tmp_path):
    """Stopped while trained with padded channels, resumed without: checkpoints hold
    Keras' shapes."""
    _, prefix = converted["keras2_nested"]
    out = tmp_path / "run"
    args = [shapes / "train", "--out", out, "--pretrained", prefix, "--epochs", "2",
            "--batch-size", "16", "--workers", "0", "--lr", "0.001", "--freeze-bn"]
    first = run_tool("xception-finetune", *args, "--stop-after", "1", "--channel-padding", "on")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "channels padded" in first.stdout
    assert not (out / "model-meta.json").exists()
    rest = run_tool("xception-finetune", *args, "--resume", "--channel-padding", "off")
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "resuming after epoch 1" in rest.stdout
    meta = read_meta(str(out / "model"))
    assert meta["model"]["kind"] == "transfer" and meta["model"]["classes"] == 3
    assert meta["model"]["transfer"]["head"][-1]["activation"] == "softmax"
    # Keras 2's moving variance (issue #28), and the export says who wrote the model
    assert "Keras 2 wrote the model: 40 BatchNorm layers" in first.stdout
    assert meta["source"]["keras_version"].startswith("2.")


def test_finetune_refuses_a_multilabel_head_on_class_folders(converted, shapes, tmp_path):
    _, prefix = converted["keras2_flattened"]           # ends in Dense(4, sigmoid)
    result = run_tool("xception-finetune", shapes / "train", "--out", tmp_path / "run",
                      "--pretrained", prefix, "--epochs", "1", "--batch-size", "16")
    assert_bad_input(result, "--pretrained", "4 sigmoid units ('out')", "multi-label",
                     "--labels-csv FILE")
    assert not (tmp_path / "run").exists()
