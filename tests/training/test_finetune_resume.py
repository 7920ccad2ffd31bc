"""Fine-tuning resumes exactly: after a stop, after SIGKILL mid-checkpoint or at random
moments, and past a damaged or unwritable epoch checkpoint.  The data and checkpoint are the
``work`` fixture's (conftest.py)."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN
from finetune_runs import SIZE, assert_same_params, finetune, load_params


RESUME_ARGS = ("--val-split", "0.25", *SIZE, "--epochs", "3", "--batch-size", "8",
               "--workers", "2", "--min-crop", "0.5", "--optimizer", "adam", "--lr", "0.001",
               "--warmup-epochs", "1")


@pytest.fixture(scope="module")
def uninterrupted(work, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = finetune(work / "small", "--out", out, "--pretrained", work / "x71", *RESUME_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_resume_after_stopping_gives_the_same_parameters(work, uninterrupted, tmp_path):
    out = tmp_path / "run"
    first = finetune(work / "small", "--out", out, "--pretrained", work / "x71", *RESUME_ARGS,
                     "--stop-after", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped after epoch 1 of" in first.stdout
    assert not (out / "epoch-0002.json").exists() and not (out / "model-0000.params").exists()
    old = as_written_by_0_2(out, tmp_path / "old")
    again = finetune(work / "small", "--out", out, "--pretrained", work / "x71", *RESUME_ARGS)
    assert again.returncode == 2 and "--resume" in again.stderr
    second = finetune(work / "small", "--out", out, "--pretrained", work / "x71", *RESUME_ARGS,
                      "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming after epoch 1" in second.stdout
    assert_same_params(load_params(out / "epoch-0003.params"),
                       load_params(uninterrupted / "epoch-0003.params"))
    assert_same_params(load_params(out / "model-0000.params"),
                       load_params(uninterrupted / "model-0000.params"))
    # a run folder of 0.2 (epochs from 0: its epoch-0000 held one epoch) resumes where it was
    third = finetune(work / "small", "--out", old, "--pretrained", work / "x71", *RESUME_ARGS,
                     "--resume")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resuming after epoch 1" in third.stdout and "epoch 2: train" in third.stdout
    assert not list(old.glob("epoch-0000.*"))          # renumbered as today's runs count
    assert_same_params(load_params(old / "epoch-0003.params"),
                       load_params(uninterrupted / "epoch-0003.params"))
    best = json.loads((old / "best.json").read_text())
    assert best["epoch"] == json.loads((uninterrupted / "best.json").read_text())["epoch"]
    assert best["metrics"]["epoch"] == best["epoch"]


def as_written_by_0_2(run, folder):
    """A copy of a run folder stopped after its first epoch, as xception-mx 0.2 wrote it:
    epochs counted from 0 in the files' names and in the record."""
    os.makedirs(folder)
    for suffix in ("params", "states"):
        shutil.copy(run / ("epoch-0001.%s" % suffix), folder / ("epoch-0000.%s" % suffix))
    record = json.loads((run / "epoch-0001.json").read_text())
    record["epoch"] = 0
    record["history"] = [dict(row, epoch=row["epoch"] - 1) for row in record["history"]]
    record["best"]["epoch"] -= 1
    (folder / "epoch-0000.json").write_text(json.dumps(record))
    return folder


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_resumes_from_the_last_complete_one(
        work, uninterrupted, tmp_path):
    out = tmp_path / "run"
    args = [os.path.join(BIN, "xception-finetune"), str(work / "small"), "--out", str(out),
            "--pretrained", str(work / "x71")] + list(RESUME_ARGS)
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, XCEPTION_MX_FAULT_PAUSE="2:120"))
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob(".epoch-0002.params.*")):
        assert process.poll() is None, "training ended before the injected pause"
        time.sleep(0.05)
    assert list(out.glob(".epoch-0002.params.*")), "never reached epoch 2's checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert (out / "epoch-0001.json").exists() and not (out / "epoch-0002.json").exists()
    resumed = finetune(work / "small", "--out", out, "--pretrained", work / "x71",
                       *RESUME_ARGS, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1" in resumed.stdout
    assert not list(out.glob(".*.tmp*"))
    assert_same_params(load_params(out / "epoch-0003.params"),
                       load_params(uninterrupted / "epoch-0003.params"))


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_to_the_same_parameters(work, tmp_path):
    """Kills drawn after the first checkpoint of a traced run (scripts/kill_harness.py): each
    killed run resumes at the epoch after its last complete checkpoint and ends with the
    uninterrupted run's parameters."""
    from kill_harness import kill_training
    args = [work / "small", "--pretrained", work / "x71", *RESUME_ARGS]
    counts = kill_training(args, tmp_path / "run", kills=2, seed=3,
                           reference=str(tmp_path / "reference"))
    assert counts.get("kills", 0) >= 1 and sum(counts["phases"].values()) == counts["kills"]
    assert counts.get("after_first_checkpoint", 0) == counts["kills"], counts
    assert counts.get("resumed_after_last_checkpoint", 0) == counts["kills"], counts
    assert counts.get("identical", 0) == counts["kills"], counts


@pytest.mark.slow
def test_damaged_or_unwritable_epoch_checkpoints(work, uninterrupted, tmp_path):
    """A full disk while writing an epoch: a clear error, the earlier epochs intact;
    a damaged epoch file: --resume continues from the one before."""
    out = tmp_path / "run"
    args = [work / "small", "--out", out, "--pretrained", work / "x71", *RESUME_ARGS]
    assert finetune(*args, "--stop-after", "1").returncode == 0
    before = (out / "epoch-0001.params").read_bytes()
    from robustness_harness import clean_failure, run_tool as run_limited
    full = run_limited("xception-finetune", args + ["--resume"], file_size_limit=20 << 20)
    assert clean_failure(full, "xception-finetune"), full.stderr[-2000:]
    assert "cannot write the checkpoint of epoch 2" in full.stderr
    assert (out / "epoch-0001.params").read_bytes() == before
    assert not (out / "epoch-0002.json").exists()
    assert finetune(*args, "--resume", "--stop-after", "2").returncode == 0
    damaged = bytearray((out / "epoch-0002.params").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (out / "epoch-0002.params").write_bytes(bytes(damaged))
    resumed = finetune(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1" in resumed.stdout
    assert_same_params(load_params(out / "epoch-0003.params"),
                       load_params(uninterrupted / "epoch-0003.params"))
