"""Two-worker fine-tuning jobs on both backends, MXNet's parameter server (xception-launch)
and Horovod (horovodrun): without validation data, with a shard smaller than a batch, killed
after an epoch and resumed (issue #15)."""
import os
import signal
import subprocess
import time

import mxnet as mx
import numpy as np
import pytest

from conftest import BIN
from shapes_dataset import write_shapes_dataset
from distributed_jobs import BOUND, FINETUNE, LAUNCH, single_process_reference, two_worker_job


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dist_sync", "horovod"])
@pytest.mark.parametrize("freeze", [[], ["--freeze-base-epochs", "1"]], ids=["all", "head-first"])
def test_a_job_without_validation_data_finishes_and_exports(backend, freeze, base, tmp_path):
    """Issue #15, item 1: without --val, the workers that have nothing left to
    do after the last epoch once exited with their share of the BN-statistics
    exchange still queued, and rank 0 waited for it forever."""
    out = tmp_path / "run"
    started = time.time()
    result = two_worker_job(backend, [FINETUNE, base / "data", "--out", out, "--pretrained",
                                      base / "x71", "--input-shape", "71", "71", "--batch-size",
                                      "4", "--epochs", "2", "--workers", "0"] + freeze)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    assert (out / "epoch-0002.json").exists() and (out / "model-0000.params").exists()
    assert "training (no validation data" in text
    assert time.time() - started < 240


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dist_sync", "horovod"])
def test_a_shard_smaller_than_a_batch_stops_every_worker_with_the_reason(backend, base,
                                                                         tmp_path):
    small = tmp_path / "small"
    write_shapes_dataset(str(small), per_class=1, seed=3, size=(80, 80))   # 3 images
    result = two_worker_job(backend, [FINETUNE, small, "--out", tmp_path / "run",
                                      "--pretrained", base / "x71", "--input-shape", "71", "71",
                                      "--batch-size", "2", "--epochs", "1", "--workers", "0"],
                            timeout=200)
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    assert "fewer than one batch" in text, text[-3000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dist_sync", "horovod"])
def test_a_job_killed_after_an_epoch_resumes_at_the_next_and_ends_like_an_uninterrupted_one(
        backend, base, tmp_path):
    """Rank 0 is killed at a named point, right after epoch 0's checkpoint: the
    job stops, --resume starts at epoch 1 (not from the start), and its epoch 1
    equals an uninterrupted job's within the rounding of two uninterrupted jobs."""
    from rounding import assert_within_rounding, deviation
    from xception_mx.faults import KILL_MARK, KILL_POINT

    def args(out):
        return [FINETUNE, base / "data", "--out", out, "--pretrained", base / "x71",
                "--input-shape", "71", "71", "--batch-size", "4", "--epochs", "2",
                "--workers", "0", "--lr", "0.001", "--freeze-bn", "--val-split", "0.25"]
    for name in ("whole", "again"):
        done = two_worker_job(backend, args(tmp_path / name))
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    out, mark = tmp_path / "killed", tmp_path / "mark"
    command = [LAUNCH, "-n", "2", "-s", "1", *BOUND, "--"] if backend == "dist_sync" else \
        [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo", "-H", "localhost:2"]
    env = dict(os.environ, **{KILL_POINT: "epoch-1:checkpoint-written", KILL_MARK: str(mark)})
    job = subprocess.Popen([str(a) for a in command + args(out) + ["--kvstore", backend]],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not mark.exists():
        assert job.poll() is None and time.time() < deadline, "never reached the kill point"
        time.sleep(0.05)
    pid = int(mark.read_text().split()[0])
    os.kill(pid, 0)                                      # alive, waiting at the point
    os.kill(pid, signal.SIGKILL)
    assert job.wait(timeout=120) != 0
    assert (out / "epoch-0001.json").exists() and not (out / "epoch-0002.json").exists()
    resumed = two_worker_job(backend, args(out) + ["--resume"])
    text = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, text[-3000:]
    assert "resuming after epoch 1 of" in text and "epoch 1: train" not in text
    load = lambda path: {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}  # noqa
    whole, again, killed = (load(tmp_path / run / "epoch-0002.params")
                            for run in ("whole", "again", "killed"))
    assert all(np.isfinite(v).all() for v in whole.values())        # a stable run
    # deviations relative to how far training moved each parameter from the start;
    # a resume that lost the epoch-0 parameters is off by about half the movement
    start = single_process_reference(str(base / "x71"), steps=0)
    assert_within_rounding(deviation(killed, whole, start), deviation(again, whole, start),
                           "resumed vs uninterrupted, epoch 1")
