"""Data-parallel jobs over several processes, on loopback, for the distributed tests
(test_distributed.py, test_launcher.py, test_horovod.py, test_two_worker_jobs.py): the
commands that start them, a one-process reference to compare their parameters with, and
waiting for their processes."""
import os
import re
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import gluon

from conftest import BIN, failure_output, process_alive
from rounding import assert_within_rounding, deviation
from xception_mx.training.recipe.optimizers import resolve_optimizer
from xception_mx.training.train import build_network, make_trainer, train_step, trainable_params


HERE = os.path.dirname(os.path.abspath(__file__))


WORKER = os.path.join(HERE, "dist_worker.py")


FAKE_SSH = "%s %s" % (sys.executable, os.path.join(HERE, "fake_ssh.py"))


LAUNCH = os.path.join(BIN, "xception-launch")


FINETUNE = os.path.join(BIN, "xception-finetune")


BOUND = ("--timeout", "400")     # no test can hang the suite


def single_process_reference(pretrained, steps=2, reverse=False, slices=1):
    """One process on the combined batch, learning rate x 2 (the linear scaling
    that summing gradients over 2 workers amounts to); with ``reverse`` each
    batch in reverse order, with ``slices`` fed in that many slices on the one
    device (the same sums evaluated another way: this run's rounding, see
    rounding.py)."""
    net, _, _ = build_network(3, (71, 71), [mx.cpu()], pretrained, seed=0, frozen_bn=True)
    trainer = make_trainer(trainable_params(net, False),
                           resolve_optimizer("nag", 0.002, {"momentum": 0.9, "wd": 0.0}), "device")
    rng = np.random.RandomState(0)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        x = rng.uniform(-1, 1, (8, 3, 71, 71)).astype(np.float32)
        y = rng.randint(0, 3, 8).astype(np.float32)
        order = slice(None, None, -1) if reverse else slice(None)
        train_step(net, trainer, loss_fn, mx.nd.array(x[order]), mx.nd.array(y[order]),
                   [mx.cpu()] * slices)
    return {k: p.data().asnumpy() for k, p in net.collect_params().items()}


def assert_ranks_equal_one_process(base, tmp_path):
    ranks = [{k: v.asnumpy() for k, v in mx.nd.load(str(tmp_path / ("rank%d.params" % r)))
              .items()} for r in (0, 1)]
    reference = single_process_reference(str(base / "x71"))
    start = single_process_reference(str(base / "x71"), steps=0)
    rounding = max(deviation(single_process_reference(str(base / "x71"), **how), reference, start)
                   for how in ({"reverse": True}, {"slices": 2}))
    for name, value in ranks[0].items():
        assert np.array_equal(value, ranks[1][name]), name
    # gradients summed as two half-batches instead of one batch: float rounding only,
    # bounded by this run's own rounding (rounding.py), on any CPU
    assert_within_rounding(deviation(ranks[0], reference, start), rounding,
                           "2 workers vs 1 process")


def process_gone(pid):
    """No such process, or a zombie awaiting its reaper."""
    return not process_alive(pid)


def assert_processes_gone(output, within=10):
    """Every worker that printed its pid is gone, at the latest ``within`` seconds after the
    launcher returned (a remote worker dies when its watchdog sees the connection close)."""
    pids = [int(p) for p in re.findall(r"^\[rank \d\] rank \d pid (\d+)$", output, re.M)]
    assert len(pids) == 2, output[-2000:]
    deadline = time.time() + within
    while not all(process_gone(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    for pid in pids:
        assert process_gone(pid), "worker pid %d still runs %d s later" % (pid, within)


def start_until_first_checkpoint(argv, out, log_path):
    """Start a training job, its output to ``log_path``; return it, still
    running, once epoch 0's checkpoint in ``out`` is complete."""
    with open(log_path, "w") as log:
        job = subprocess.Popen([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "epoch-0001.json").exists():
        assert job.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.05)
    return job


def assert_resumed_to_the_end(resumed, out):
    """A ``--resume`` run continued after epoch 1 or 2, ran all 3 epochs, exported."""
    assert resumed.returncode == 0, failure_output(resumed)
    assert re.search(r"resuming after epoch [12] of", resumed.stdout)
    with open(out / "metrics.csv") as f:
        assert [int(line.split(",")[0]) for line in f.readlines()[1:]] == [1, 2, 3]
    assert (out / "model-0000.params").exists()


def dist_finetune_args(base, out, *extra):
    return [FINETUNE, base / "data", "--out", out, "--pretrained", base / "x71",
            "--input-shape", "71", "71", "--batch-size", "4", "--val-split", "0.25",
            "--kvstore", "dist_sync", "--workers", "0"] + list(extra)


def write_hosts(path, text):
    path.write_text(text)
    return path


def horovodrun(n, *command):
    return subprocess.run([os.path.join(BIN, "horovodrun"), "-np", str(n), "--gloo", "-H",
                           "localhost:%d" % n] + [str(c) for c in command],
                          capture_output=True, text=True, timeout=600)


def two_worker_job(backend, argv, timeout=300):
    """``argv`` (an xception-finetune command) as 2 workers of ``backend``
    (``dist_sync``: xception-launch, 1 server; ``horovod``: horovodrun), bounded
    in time so that a hang fails instead of stopping the suite."""
    argv = [str(a) for a in argv] + ["--kvstore", backend]
    if backend == "horovod":
        command = [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo", "-H", "localhost:2"]
    else:
        command = [LAUNCH, "-n", "2", "-s", "1", "--timeout", str(timeout - 60), "--"]
    return subprocess.run(command + argv, capture_output=True, text=True, timeout=timeout)
