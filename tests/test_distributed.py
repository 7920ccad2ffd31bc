"""Data-parallel fine-tuning on MXNet's parameter server, on loopback."""
import os
import re
import sys
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from conftest import run_tool
from convert import convert_file
from xception_mx.synthetic import write_shapes_dataset
from xception_mx.train import build_network, make_trainer, train_step, trainable_params

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_worker.py")


@pytest.fixture(scope="module")
def base(keras_files_top, tmp_path_factory):
    directory = tmp_path_factory.mktemp("dist")
    convert_file(keras_files_top["legacy-h5"], str(directory / "x71"), input_shape=(71, 71))
    write_shapes_dataset(str(directory / "data"), per_class=8, seed=2, size=(80, 80))
    return directory


def single_process_reference(pretrained):
    """One process on the combined batch, learning rate x 2 (the linear scaling
    that summing gradients over 2 workers amounts to)."""
    net, _ = build_network(3, (71, 71), [mx.cpu()], pretrained, seed=0, frozen_bn=True)
    trainer = make_trainer(trainable_params(net, False), "nag", 0.002, 0.9, 0.0, "device")
    rng = np.random.RandomState(0)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(2):
        x = rng.uniform(-1, 1, (8, 3, 71, 71)).astype(np.float32)
        y = rng.randint(0, 3, 8).astype(np.float32)
        train_step(net, trainer, loss_fn, mx.nd.array(x), mx.nd.array(y), [mx.cpu()])
    return {k: p.data().asnumpy() for k, p in net.collect_params().items()}


@pytest.mark.slow
def test_two_workers_end_identical_and_equal_to_one_process(base, tmp_path):
    result = run_tool("xception-launch", "-n", "2", "-s", "1", "--", sys.executable, WORKER,
                      base / "x71", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the scheduler assigns ranks, so launch order and rank may differ
    assert re.search(r"^\[worker \d\] rank 0 done$", result.stdout, re.M)
    assert re.search(r"^\[worker \d\] rank 1 done$", result.stdout, re.M)
    ranks = [{k: v.asnumpy() for k, v in mx.nd.load(str(tmp_path / ("rank%d.params" % r)))
              .items()} for r in (0, 1)]
    reference = single_process_reference(str(base / "x71"))
    for name, value in ranks[0].items():
        assert np.array_equal(value, ranks[1][name]), name
        # gradients summed as two half-batches instead of one batch: float rounding only
        np.testing.assert_allclose(value, reference[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_a_dead_worker_stops_the_whole_job(base, tmp_path):
    start = time.time()
    result = run_tool("xception-launch", "-n", "2", "-s", "1", "--", sys.executable, WORKER,
                      base / "x71", tmp_path, "die")
    assert result.returncode == 1
    assert re.search(r"worker \d exited with status -9; stopping the job", result.stderr)
    assert time.time() - start < 120


@pytest.mark.slow
def test_finetune_runs_as_a_two_worker_job(base, tmp_path):
    out = tmp_path / "run"
    result = run_tool("xception-launch", "-n", "2", "-s", "1", "--",
                      os.path.join(os.path.dirname(sys.executable), "xception-finetune"),
                      base / "data", "--out", out, "--pretrained", base / "x71",
                      "--input-shape", "71", "71", "--epochs", "2", "--batch-size", "4",
                      "--val-split", "0.25", "--kvstore", "dist_sync", "--workers", "0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logged = re.findall(r"^\[(worker \d)\] epoch 1: train", result.stdout, re.M)
    assert len(logged) == 1                                 # only rank 0 logs
    assert (out / "epoch-0001.json").exists() and (out / "model-0000.params").exists()


def test_dist_kvstore_without_the_launcher_is_refused(base, tmp_path):
    result = run_tool("xception-finetune", base / "data", "--out", tmp_path / "run",
                      "--kvstore", "dist_sync")
    assert result.returncode == 2 and "xception-launch" in result.stderr
