"""Files written through ``atomic_path`` are all or nothing: a write that fails before its
rename leaves the previous file as it was, and no temporary file.

The failure is injected at the rename (``os.replace`` raising, as a full disk or a dying
process would stop it there), after the new content was written in full: a writer that wrote
straight to the final name would already have replaced the old content by then.  The
checkpoint kill tests cannot see that (an epoch's JSON records the sha256 of its files, which
hides a half-written ``.params`` from ``--resume``); these look at the files themselves.
"""
import os

import mxnet as mx
import pytest
from mxnet import gluon

from xception_mx import atomic
from xception_mx.training.padded_training import ShapeMap
from xception_mx.training.run_dir import RunDirectory
from xception_mx.training.recipe.optimizers import resolve_optimizer
from xception_mx.training.train import make_trainer


def fail_renames(monkeypatch):
    """From now on every rename fails as a full disk would stop it."""
    def replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.fixture
def failing_rename(monkeypatch):
    fail_renames(monkeypatch)


def assert_only(folder, files):
    """The folder holds exactly ``files`` (name -> bytes): nothing changed, no temporary."""
    assert sorted(os.listdir(folder)) == sorted(files)
    for name, content in files.items():
        with open(os.path.join(folder, name), "rb") as f:
            assert f.read() == content, name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, failing_rename):
    path = tmp_path / "best.json"
    path.write_bytes(b'{"epoch": 3}\n')
    with pytest.raises(OSError, match="No space left"):
        atomic.write_text(str(path), '{"epoch": 4}\n')
    assert_only(tmp_path, {"best.json": b'{"epoch": 3}\n'})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("the writer failed half-way")
    assert_only(tmp_path, {"best.json": b'{"epoch": 3}\n'})


def test_a_run_folders_files_stay_as_they_were_when_their_write_fails(tmp_path, monkeypatch):
    run = RunDirectory(str(tmp_path))
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize(ctx=mx.cpu())
    trainer = make_trainer(net.collect_params(),
                           resolve_optimizer("nag", 0.1, {"momentum": 0.9, "wd": 0.0}), "device")
    rows = [{"epoch": 0, "train_loss": 1.0}]
    run.write_best(0, rows[0])
    run.write_csv(rows)
    run.save_epoch(0, net, trainer, {"epoch": 0}, ShapeMap(net, net))
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert {"best.json", "metrics.csv", "epoch-0000.params", "epoch-0000.states",
            "epoch-0000.json"} <= set(before)
    fail_renames(monkeypatch)
    rows.append({"epoch": 1, "train_loss": 0.5})
    with pytest.raises(OSError):
        run.write_best(1, rows[1])
    with pytest.raises(OSError):
        run.write_csv(rows)
    net.weight.set_data(net.weight.data() + 1)
    with pytest.raises(Exception, match="No space left|cannot write"):
        run.save_epoch(0, net, trainer, {"epoch": 0, "again": True}, ShapeMap(net, net))
    assert_only(tmp_path, before)
