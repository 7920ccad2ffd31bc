"""Data-parallel fine-tuning over several processes, on loopback, on MXNet's parameter server
with the local launcher (the ssh launcher: test_launcher.py; Horovod: test_horovod.py; jobs
on both: test_two_worker_jobs.py)."""
import os
import re
import signal
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from conftest import failure_output, run_tool
from distributed_jobs import (BOUND, FINETUNE, LAUNCH, WORKER, assert_processes_gone,
                              assert_ranks_equal_one_process, assert_resumed_to_the_end,
                              dist_finetune_args, start_until_first_checkpoint)


@pytest.mark.slow
def test_two_workers_end_identical_and_equal_to_one_process(base, tmp_path):
    result = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--", sys.executable,
                      WORKER, "dist_sync", base / "x71", tmp_path)
    assert result.returncode == 0, failure_output(result)
    # the scheduler assigns ranks, so launch order and rank may differ
    # ps-lite's scheduler assigns the ranks; the prefix follows what each worker says
    assert re.search(r"^\[rank 0\] rank 0 done", result.stdout, re.M)
    assert re.search(r"^\[rank 1\] rank 1 done", result.stdout, re.M)
    assert_ranks_equal_one_process(base, tmp_path)


@pytest.mark.slow
def test_a_dead_worker_stops_the_whole_job(base, tmp_path):
    start = time.time()
    result = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--", sys.executable,
                      WORKER, "dist_sync", base / "x71", tmp_path, "die")
    assert result.returncode == 1
    assert re.search(r"worker \d \(rank 1\) exited with status -9; stopping the job",
                     result.stderr)
    assert time.time() - start < 120
    assert_processes_gone(result.stdout)


@pytest.mark.slow
def test_finetune_runs_as_a_two_worker_job_with_a_head_only_phase(base, tmp_path):
    out = tmp_path / "run"
    result = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--",
                      *dist_finetune_args(base, out, "--epochs", "2", "--freeze-base-epochs",
                                          "1"))
    assert result.returncode == 0, failure_output(result)
    logged = re.findall(r"^\[(rank \d)\] epoch 2: train", result.stdout, re.M)
    assert logged == ["rank 0"]                             # only rank 0 logs
    assert (out / "epoch-0002.json").exists() and (out / "model-0000.params").exists()
    pretrained = mx.nd.load(str(base / "x71-0000.params"))
    epochs = [mx.nd.load(str(out / ("epoch-%04d.params" % e))) for e in (1, 2)]
    for name in ("block1_conv1_weight", "block7_sepconv2_pointwise_weight"):
        reference = pretrained["arg:" + name].asnumpy()
        np.testing.assert_array_equal(epochs[0][name].asnumpy(), reference, err_msg=name)
        assert np.abs(epochs[1][name].asnumpy() - reference).max() > 1e-6, name
    assert np.abs(epochs[1]["predictions_weight"].asnumpy()
                  - epochs[0]["predictions_weight"].asnumpy()).max() > 1e-6


@pytest.mark.slow
def test_a_killed_worker_stops_the_job_and_resume_completes_it(base, tmp_path):
    out, log_path = tmp_path / "run", tmp_path / "launch.log"
    command = [LAUNCH, "-n", "2", "-s", "1", *BOUND, "--"] + \
        dist_finetune_args(base, out, "--epochs", "3")
    job = start_until_first_checkpoint(command, out, log_path)
    pids = dict(re.findall(r"^xception-launch: (worker \d) on \S+, pid (\d+)$",
                           log_path.read_text(), re.M))
    os.kill(int(pids["worker 1"]), signal.SIGKILL)
    started = time.time()
    status = job.wait(timeout=120)
    text = log_path.read_text()
    assert status == 1, text[-3000:]
    assert re.search(r"worker 1 \(rank [01]\) exited with status -9; stopping the job "
                     r"\(restart it with --resume\)", text)
    assert time.time() - started < 60
    assert not (out / "model-0000.params").exists()
    resumed = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--",
                       *dist_finetune_args(base, out, "--epochs", "3", "--resume"))
    assert_resumed_to_the_end(resumed, out)
    assert not list(out.glob(".*.tmp*"))


def test_dist_kvstore_without_the_launcher_is_refused(base, tmp_path):
    result = run_tool("xception-finetune", base / "data", "--out", tmp_path / "run",
                      "--kv-store", "dist_sync")        # MXNet examples' spelling works too
    assert result.returncode == 2 and "xception-launch" in result.stderr


def test_a_launched_worker_without_a_dist_kvstore_is_refused(base, tmp_path):
    """Issue #15, item 2: under xception-launch without --kvstore dist_*, each
    worker would train alone on all the data and export into the same folder."""
    out = tmp_path / "run"
    result = run_tool("xception-launch", "-n", "2", "-s", "1", "--timeout", "120", "--",
                      FINETUNE, base / "data", "--out", out, "--pretrained", base / "x71",
                      "--input-shape", "71", "71", "--batch-size", "4", "--epochs", "1",
                      "--workers", "0")
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    assert "--kvstore is device: add --kvstore dist_sync" in text, text[-3000:]
    assert not out.exists()
