"""Layers the Keras file saved non-trainable stay frozen in training, as in Keras (issue #28):
no gradient, no update, BatchNorm in inference mode; ``--trainable-from LAYER`` freezes every
layer before ``LAYER`` of a plain checkpoint."""
import json

import mxnet as mx
import numpy as np
import pytest

import own_models
from conftest import PHOTOS, assert_bad_input, run_tool

BEFORE_BLOCK13 = 70        # weighted layers of blocks 1-12 (residual ones included)


def class_folder(root, classes):
    for c in range(classes):
        (root / ("c%d" % c)).mkdir(parents=True)
        for i, photo in enumerate(PHOTOS[c:c + 2]):
            (root / ("c%d" % c) / ("%d.jpg" % i)).write_bytes(open(photo, "rb").read())
    return root


def moved_and_kept(before_file, after_file):
    before, after = mx.nd.load(str(before_file)), mx.nd.load(str(after_file))
    moved = {k.split(":", 1)[1] for k in before
             if not np.array_equal(before[k].asnumpy(), after[k].asnumpy())}
    return moved, {k.split(":", 1)[1] for k in before} - moved


def block_of(param):
    name = param.split("_")[0]
    return int(name[5:]) if name.startswith("block") else 99      # the head after the base


@pytest.mark.slow
@pytest.mark.parametrize("builder", [own_models.frozen_below_block13,
                                     own_models.keras2_frozen_below_block13],
                         ids=["keras3", "keras2"])
def test_a_base_saved_frozen_below_block13_trains_only_block13_on_and_the_head(builder,
                                                                               tmp_path):
    path = own_models.save(own_models.built(builder), str(tmp_path / "m.h5"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    meta = json.loads((tmp_path / "mx-meta.json").read_text())
    assert len(meta["frozen_layers"]) == BEFORE_BLOCK13
    assert max(block_of(layer) for layer in meta["frozen_layers"]) == 12
    result = run_tool("xception-finetune", class_folder(tmp_path / "data", 3), "--pretrained",
                      tmp_path / "mx", "--epochs", 1, "--batch-size", 3, "--workers", 0,
                      "--optimizer", "keras-adamw", "--lr", 0.01, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "70 layers frozen" in result.stdout
    moved, kept = moved_and_kept(tmp_path / "mx-0000.params",
                                 tmp_path / "run" / "model-0000.params")
    assert all(block_of(p) <= 12 for p in kept) and len(kept) == 205    # BN statistics too
    assert all(block_of(p) >= 13 for p in moved) and len(moved) == 29 + 8   # fc1, fc1_bn, out
    export = json.loads((tmp_path / "run" / "model-meta.json").read_text())
    assert export["frozen_layers"] == meta["frozen_layers"]
    if builder is own_models.keras2_frozen_below_block13:
        return                  # the step comparison of a frozen base: Keras 3's file below
    step = run_tool("xception-parity", "--keras", path, "--mxnet", tmp_path / "mx",
                    *PHOTOS[:3], "--random", 1, "--training", "--report", tmp_path / "s.json")
    assert step.returncode == 0, step.stdout + step.stderr
    records = json.loads((tmp_path / "s.json").read_text())["records"]
    gradients = [r for r in records if r["what"] == "gradient"]
    assert len(gradients) == 25         # the weights Keras trains: block 13 on and the head
    assert all(block_of(r["keras_layer"]) >= 13 for r in gradients)


@pytest.mark.slow
def test_trainable_from_freezes_every_layer_before_it_in_a_plain_checkpoint(tmp_path):
    model = own_models.grayscale_plain(channels=3)
    path = own_models.save(model, str(tmp_path / "plain.keras"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx", "--input-shape", 71,
                    71).returncode == 0
    data = class_folder(tmp_path / "data", 5)
    bad = run_tool("xception-finetune", data, "--pretrained", tmp_path / "mx", "--out",
                   tmp_path / "bad", "--trainable-from", "block99_conv")
    assert_bad_input(bad, "--trainable-from block99_conv", "block1_conv1")
    assert not (tmp_path / "bad").exists()
    result = run_tool("xception-finetune", data, "--pretrained", tmp_path / "mx", "--epochs",
                      1, "--batch-size", 5, "--workers", 0, "--trainable-from",
                      "block13_sepconv1", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    moved, kept = moved_and_kept(tmp_path / "mx-0000.params",
                                 tmp_path / "run" / "model-0000.params")
    assert all(block_of(p) <= 12 for p in kept) and len(kept) == 205
    assert all(block_of(p) >= 13 for p in moved) and len(moved) == 29 + 2   # predictions
