"""SIGKILL at named points (``xception_mx.faults``), not at lucky moments: each
test checks the process was alive and at the point when it was killed, then
what the next reader and the next writer find (issue #14)."""
import os
import re
import signal
import subprocess
import time

import mxnet as mx
import numpy as np
import pytest

from conftest import BIN, run_tool
from xception_mx.conversion import convert_file
from robustness_harness import checkpoint_state
from xception_mx.commands.runner import EXIT_BAD_INPUT
from xception_mx.faults import CRASH_POINT, KILL_MARK, KILL_POINT

# point -> the checkpoint a reader finds after the kill: the commit journal is
# the commit point, a reader completes a commit the writer left half done
CONVERSION_POINTS = {
    "checkpoint:before-temp-files": "old",
    "checkpoint:params-written": "old",
    "checkpoint:journal-written": "new",
    "checkpoint:first-rename-done": "new",
    "checkpoint:committed": "new",
}


def kill_at(argv, point, mark, timeout=300):
    """Run ``argv`` until it reaches ``point``, check it is alive there, SIGKILL it."""
    env = dict(os.environ, **{KILL_POINT: point, KILL_MARK: str(mark)})
    proc = subprocess.Popen([str(a) for a in argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not mark.exists():
        assert proc.poll() is None, "ended before %s: %s" % (point, proc.stderr.read()[-2000:])
        assert time.time() < deadline, "never reached %s" % point
        time.sleep(0.02)
    pid, name = mark.read_text().split()
    assert (int(pid), name) == (proc.pid, point)
    assert proc.poll() is None                    # alive, waiting at the point
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    mark.unlink()


@pytest.fixture(scope="module")
def sources(keras_files_top, keras_file_notop):
    return keras_file_notop, keras_files_top["legacy-h5"]


@pytest.mark.parametrize("point", sorted(CONVERSION_POINTS))
def test_a_conversion_killed_at_a_named_point_leaves_the_old_or_the_new_checkpoint(
        point, sources, tmp_path):
    old_source, new_source = sources
    prefix = str(tmp_path / "x")
    convert_file(old_source, prefix, input_shape=(99, 99))
    old = checkpoint_state(prefix)
    kill_at([os.path.join(BIN, "keras2mxnet"), new_source, "-o", prefix, "--force",
             "--input-shape", "99", "99"], point, tmp_path / "mark")
    found = checkpoint_state(prefix)            # a reader completes a half-done commit
    params = mx.nd.load(prefix + "-0000.params")
    if CONVERSION_POINTS[point] == "old":
        assert found == old and "arg:predictions_weight" not in params
    else:
        assert found not in (None, old) and params["arg:predictions_weight"].shape == (1000, 2048)
    assert not os.path.exists(os.path.join(str(tmp_path), ".x.commit.json"))
    again = subprocess.run([os.path.join(BIN, "keras2mxnet"), old_source, "-o", prefix,
                            "--force", "--input-shape", "99", "99"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert checkpoint_state(prefix) == old            # the same conversion as the first
    assert sorted(os.listdir(tmp_path)) == ["x-0000.params", "x-meta.json", "x-symbol.json"]


def test_a_native_crash_shows_where_every_thread_was_and_leaves_no_checkpoint(sources,
                                                                             tmp_path):
    # MXNet's own handler prints "Segmentation fault: 11" and no stack: a crash in its C++
    # code (or Horovod's) must say where the Python code was, for the bug report
    prefix = tmp_path / "x"
    result = run_tool("keras2mxnet", sources[1], "-o", prefix, "--input-shape", "99", "99",
                      env={CRASH_POINT: "checkpoint:params-written"})
    assert result.returncode not in (0, EXIT_BAD_INPUT), result.stderr[-2000:]
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert re.search(r'File ".*checkpoint/files\.py", line \d+ in write_checkpoint', result.stderr)
    assert re.search(r'File ".*commands/keras2mxnet\.py", line \d+ in main', result.stderr)
    assert checkpoint_state(str(prefix)) is None
    assert not os.path.exists(str(prefix) + "-0000.params")
    again = run_tool("keras2mxnet", sources[1], "-o", prefix, "--input-shape", "99", "99")
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(tmp_path)) == ["x-0000.params", "x-meta.json", "x-symbol.json"]


def _finetune_args(data, pretrained, out, epochs):
    return [os.path.join(BIN, "xception-finetune"), data, "--out", out, "--pretrained",
            pretrained, "--input-shape", "71", "71", "--epochs", str(epochs), "--batch-size",
            "8", "--workers", "0", "--lr", "0.005", "--freeze-bn"]


@pytest.mark.slow
def test_a_run_killed_after_an_epoch_resumes_at_the_next_and_ends_like_an_uninterrupted_one(
        keras_files_top, tmp_path):
    from shapes_dataset import write_shapes_dataset
    write_shapes_dataset(str(tmp_path / "data"), per_class=8, seed=2, size=(80, 80))
    pretrained = str(tmp_path / "x71")
    convert_file(keras_files_top["legacy-h5"], pretrained, input_shape=(71, 71))
    whole = subprocess.run(_finetune_args(tmp_path / "data", pretrained, tmp_path / "whole", 3),
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "killed"
    kill_at(_finetune_args(tmp_path / "data", pretrained, out, 3),
            "epoch-2:checkpoint-written", tmp_path / "mark")
    assert (out / "epoch-0002.json").exists() and not (out / "epoch-0003.json").exists()
    resumed = subprocess.run(_finetune_args(tmp_path / "data", pretrained, out, 3) +
                             ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 2 of" in resumed.stdout          # not from the start
    assert resumed.stdout.count("epoch 3: train") == 1 and "epoch 2: train" not in \
        resumed.stdout
    a = mx.nd.load(str(tmp_path / "whole" / "epoch-0003.params"))
    b = mx.nd.load(str(out / "epoch-0003.params"))
    assert sorted(a) == sorted(b)
    assert all(np.isfinite(v.asnumpy()).all() for v in a.values())     # a stable run
    # frozen BN and a small rate: a stable run; two uninterrupted CPU runs differ by
    # about 1e-8 per step (measured), so 1e-5 leaves room for any CPU's rounding
    for name in a:
        np.testing.assert_allclose(a[name].asnumpy(), b[name].asnumpy(), rtol=0, atol=1e-5,
                                   err_msg=name)
