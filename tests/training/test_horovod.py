"""Data-parallel fine-tuning with Horovod (Gloo) under horovodrun, on loopback."""
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import BIN, failure_output, run_tool
from distributed_jobs import (WORKER, assert_ranks_equal_one_process, assert_resumed_to_the_end,
                              dist_finetune_args, horovodrun, start_until_first_checkpoint)


@pytest.mark.slow
def test_two_horovod_workers_end_identical_and_equal_to_one_process(base, tmp_path):
    result = horovodrun(2, sys.executable, WORKER, "horovod", base / "x71", tmp_path)
    assert result.returncode == 0, failure_output(result)
    assert_ranks_equal_one_process(base, tmp_path)


def horovod_worker(job, rank):
    """The xception-finetune process of ``rank`` among ``job``'s descendants."""
    import psutil
    for child in psutil.Process(job.pid).children(recursive=True):
        try:
            if any("xception-finetune" in word for word in child.cmdline()) and \
                    child.environ().get("HOROVOD_RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    raise AssertionError("no xception-finetune process of rank %d" % rank)


@pytest.mark.slow
def test_horovod_finetune_stops_when_a_worker_dies_and_resume_completes_it(base, tmp_path):
    out, log_path = tmp_path / "run", tmp_path / "horovodrun.log"
    command = [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo", "-H", "localhost:2"]
    args = [str(a) for a in dist_finetune_args(base, out, "--epochs", "3",
                                               "--freeze-base-epochs", "1")]
    args[args.index("dist_sync")] = "horovod"
    job = start_until_first_checkpoint(command + args, out, log_path)
    horovod_worker(job, 1).kill()
    started = time.time()
    status = job.wait(timeout=120)
    assert status != 0, log_path.read_text()[-3000:]
    assert time.time() - started < 60
    assert not (out / "model-0000.params").exists()
    resumed = subprocess.run(command + args + ["--resume"], capture_output=True, text=True,
                             timeout=600)
    assert_resumed_to_the_end(resumed, out)
    logged = re.findall(r"^\[(\d)\]<stdout>:epoch 3: train", resumed.stdout, re.M)
    assert logged == ["0"]                                   # only rank 0 logs


def test_horovod_without_horovodrun_is_refused(base, tmp_path):
    result = run_tool("xception-finetune", base / "data", "--out", tmp_path / "run",
                      "--kvstore", "horovod")
    assert result.returncode == 2
    assert "--kvstore horovod: start the job with horovodrun" in result.stderr
    assert not (tmp_path / "run").exists()
