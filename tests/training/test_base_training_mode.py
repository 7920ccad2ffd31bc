"""A base the model calls as ``base(x, training=False)`` (the keras.io guide) trains as the
Keras that wrote the file trains it (issue #28's comparison found the difference): Keras 2
keeps its BatchNorm layers in inference mode while the model trains, Keras 3 (3.15: ``fit``'s
``training=True`` overrides the call's ``False``) trains them on batch statistics."""
import mxnet as mx
import numpy as np
import pytest

import own_models
from conftest import PHOTOS, run_tool


@pytest.mark.slow
@pytest.mark.parametrize("builder, suffix, moves", [
    (own_models.nested, ".keras", True),
    (own_models.keras2_nested, ".h5", False),
], ids=["keras3", "keras2"])
def test_fine_tuning_moves_the_base_batchnorm_statistics_as_the_files_keras_does(
        builder, suffix, moves, tmp_path):
    path = own_models.save(own_models.built(builder), str(tmp_path / ("m" + suffix)))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    data = tmp_path / "data"
    for c in range(2):
        (data / ("c%d" % c)).mkdir(parents=True)
        for i, photo in enumerate(PHOTOS[c * 2:c * 2 + 2]):
            (data / ("c%d" % c) / ("%d.jpg" % i)).write_bytes(open(photo, "rb").read())
    result = run_tool("xception-finetune", data, "--pretrained", tmp_path / "mx", "--epochs", 1,
                      "--batch-size", 4, "--workers", 0, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    before = mx.nd.load(str(tmp_path / "mx-0000.params"))
    after = mx.nd.load(str(tmp_path / "run" / "model-0000.params"))
    key = "aux:block1_conv1_bn_running_mean"
    moved = float(np.abs(after[key].asnumpy() - before[key].asnumpy()).max())
    head = "aux:fc1_bn_running_mean"          # the head's BatchNorm trains in both
    assert float(np.abs(after[head].asnumpy() - before[head].asnumpy()).max()) > 1e-6
    assert (moved > 1e-6) == moves, moved
