"""Random kills timed by traced runs: conversions killed while they write, fine-tuning runs
killed after their first checkpoint, each kill's phase read from the killed run's trace
(``XCEPTION_MX_TRACE``, see ``xception_mx/faults.py``).  ``scripts/robustness.py`` runs long
versions, ``tests/robustness/test_robustness.py`` a short one."""
import collections
import os
import random
import re
import shutil
import signal
import subprocess
import time

from robustness_harness import BIN, checkpoint_state, run_tool

# the named points (xception_mx/faults.py) random kills are counted from
WRITE_STARTS = "checkpoint:before-temp-files"
FIRST_CHECKPOINT = "epoch-1:checkpoint-written"


def read_trace(path, start):
    """``[(seconds since start, point name)]`` from a fault-point trace (faults.py)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [line.split(" ", 1) for line in f.read().splitlines() if " " in line]
    return [(float(t) - start, name) for t, name in rows]


def wait_for_point(process, trace, point, start):
    """Wait until the traced ``process`` has passed ``point`` (or has ended)."""
    while process.poll() is None and point not in [n for _, n in read_trace(trace, start)]:
        time.sleep(0.005)


def traced_run(command, trace, env=None, kill_after=None, timeout=900, after_point=None):
    """Run COMMAND with a fault-point trace, SIGKILLed after ``kill_after`` seconds (counted
    from when it passes ``after_point``, if given) if still alive.  Returns ``(killed,
    seconds, trace rows, returncode)``; ``killed`` is True only if the process was alive
    when the signal was sent."""
    if os.path.exists(trace):
        os.remove(trace)
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, XCEPTION_MX_TRACE=trace, **(env or {})))
    killed = False
    if after_point and kill_after is not None:
        wait_for_point(process, trace, after_point, start)
    try:
        process.wait(timeout=timeout if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        if kill_after is None:
            process.kill()
            raise
        process.send_signal(signal.SIGKILL)
        killed = True
        process.wait()
    return killed, time.time() - start, read_trace(trace, start), process.returncode


def phase_of(rows, before="before the first point"):
    """The phase a run was in when it stopped: the last point it passed (steps are no
    phases: a training run passes one a step)."""
    phases = [name for _, name in rows if ":step-" not in name]
    return phases[-1] if phases else before


def point_time(rows, name):
    found = [t for t, n in rows if n == name]
    assert found, "the measured run never reached %s (trace: %s)" % (name, rows)
    return found[0]


def kill_conversions(source_a, source_b, prefix, kills, seed):
    """Convert ``source_a`` to ``prefix``, then convert ``source_b`` over it (``--force``)
    and SIGKILL that at a random moment, ``kills`` times; after each kill the checkpoint
    must be exactly A's or B's.  The moments are drawn over the write of the checkpoint as
    a traced run measured it (from its first point to its end), counted from when the
    killed run reaches that point, and the trace of each killed run says which phase the
    kill landed in.

    Returns counts: kills (processes alive when killed), old (A's intact), new (B's
    complete), corrupted, and ``phases``: ``{last point passed: kills}``.
    """
    rng = random.Random(seed)
    counts, phases = collections.Counter(), collections.Counter()
    first = run_tool("keras2mxnet", [source_a, "-o", prefix, "--force"])
    assert first.returncode == 0, first.stderr
    state_a = checkpoint_state(prefix)
    run_tool("keras2mxnet", [source_b, "-o", prefix + "_b", "--force"])
    state_b = checkpoint_state(prefix + "_b")
    command = [os.path.join(BIN, "keras2mxnet"), source_b, "-o", prefix, "--force"]
    trace = prefix + ".trace"
    _, duration, rows, code = traced_run(command, trace)
    assert code == 0, "the measured conversion failed"
    write_starts = point_time(rows, WRITE_STARTS)
    attempts = 0
    while counts["kills"] < kills and attempts < 3 * kills:
        attempts += 1
        run_tool("keras2mxnet", [source_a, "-o", prefix, "--force"])
        # drawn over the write, counted from when this run starts it: the time to read and
        # convert varies from run to run more than the write lasts
        killed, _, rows, code = traced_run(command, trace,
                                           kill_after=rng.uniform(0, duration - write_starts),
                                           after_point=WRITE_STARTS)
        if not killed:
            assert code == 0, "a conversion failed before the kill (exit %s)" % code
            counts["finished_first"] += 1
            continue
        counts["kills"] += 1
        phases[phase_of(rows, "reading and converting")] += 1
        state = checkpoint_state(prefix)
        if state == state_a:
            counts["old_intact"] += 1
        elif state == state_b:
            counts["new_complete"] += 1
        else:
            counts["corrupted"] += 1
    return dict(counts, phases=dict(phases), measured={"seconds": duration,
                                                        "write_starts": write_starts})


# Two uninterrupted CPU runs of the same configuration can differ by ~1e-8 after a
# step (oneDNN reductions over threads), which training amplifies a little.
TRAINING_ATOL = 1e-5


def kill_training(args, out, kills, seed, reference):
    """Fine-tuning runs (``xception-finetune ARGS``) each SIGKILLed at a random moment after
    its first checkpoint, then completed with ``--resume``: each must resume at the epoch
    after its last complete checkpoint and end with the parameters of the uninterrupted,
    traced run in ``reference`` (its folder; final epoch's params compared within
    ``TRAINING_ATOL``).  The moments are drawn over the reference run's duration after its
    first checkpoint, counted from when the killed run writes its own; each killed run's
    trace says where the kill landed.

    Returns counts: kills, after_first_checkpoint (killed runs whose trace shows it),
    resumed_after_last_checkpoint, identical, and ``phases``.
    """
    import glob
    import json
    import mxnet as mx
    import numpy as np
    rng = random.Random(seed)
    counts, phases = collections.Counter(), collections.Counter()
    finetune = [os.path.join(BIN, "xception-finetune")] + [str(a) for a in args]
    _, duration, rows, code = traced_run(finetune + ["--out", reference],
                                         os.path.join(reference + ".trace"))
    assert code == 0, "the reference fine-tuning run failed"
    first_checkpoint = point_time(rows, FIRST_CHECKPOINT)
    epochs = sum(name.endswith(":checkpoint-written") for _, name in rows)
    last = sorted(glob.glob(os.path.join(reference, "epoch-*.params")))[-1]
    expected = mx.nd.load(last)
    os.makedirs(str(out), exist_ok=True)
    case = 0
    while counts["kills"] < kills and case < 3 * kills:    # a run may end before its kill
        case += 1
        folder = os.path.join(str(out), "case%d" % case)
        # drawn over what follows the first checkpoint, counted from when this run writes
        # it: how long the start takes varies from run to run (as in kill_conversions)
        killed, _, rows, code = traced_run(
            finetune + ["--out", folder], folder + ".trace",
            kill_after=rng.uniform(0, duration - first_checkpoint),
            after_point=FIRST_CHECKPOINT)
        if not killed:
            assert code == 0, "fine-tuning case %d failed before the kill (exit %s)" % (case,
                                                                                      code)
            counts["finished_first"] += 1
            continue
        counts["kills"] += 1
        phases[phase_of(rows)] += 1
        counts["after_first_checkpoint"] += int(FIRST_CHECKPOINT in [name for _, name in rows])
        complete = sorted(json.load(open(p))["epoch"] for p in
                          glob.glob(os.path.join(folder, "epoch-*.json")))
        resumed = subprocess.run(finetune + ["--out", folder, "--resume"], capture_output=True,
                                 text=True, timeout=900)
        if resumed.returncode != 0:
            counts["resume_failed"] += 1
            continue
        first_trained = re.search(r"^epoch (\d+):", resumed.stdout, re.M)
        due = complete[-1] + 1 if complete else 1      # the epoch the resume must start at
        counts["resumed_after_last_checkpoint"] += int(      # (epochs + 1: none was left)
            int(first_trained.group(1)) == due if first_trained else due == epochs + 1)
        got = mx.nd.load(os.path.join(folder, os.path.basename(last)))
        counts["identical"] += int(sorted(got) == sorted(expected) and all(
            np.allclose(got[k].asnumpy(), expected[k].asnumpy(), rtol=0, atol=TRAINING_ATOL)
            for k in expected))
        shutil.rmtree(folder)          # a case's checkpoints take hundreds of MB
    return dict(counts, phases=dict(phases),
                measured={"seconds": duration, "first_checkpoint": first_checkpoint})
