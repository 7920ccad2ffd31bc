"""Robustness harness: damaged Keras files and full disks (kills: ``kill_harness.py``).

Each function runs a bounded number of cases through the real command-line
tools (in subprocesses, so a crash or a hang is seen as such) and returns
counts; ``tests/robustness/test_robustness.py`` runs short versions and ``scripts/
robustness.py`` long ones that write ``ROBUSTNESS.md``.
"""
import collections
import os
import random
import resource
import subprocess
import sys
import time

from xception_mx.atomic import sha256_file
from xception_mx.progress import without_progress

BIN = os.path.dirname(sys.executable)
CASE_TIMEOUT = 120

Outcome = collections.namedtuple("Outcome", "returncode stdout stderr seconds")


def run_tool(name, args, timeout=CASE_TIMEOUT, file_size_limit=None, env=None):
    """Run a console script; a hang raises ``subprocess.TimeoutExpired``."""
    def limit():
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    start = time.time()
    result = subprocess.run([os.path.join(BIN, name)] + [str(a) for a in args],
                            capture_output=True, text=True, timeout=timeout,
                            preexec_fn=limit, env=dict(os.environ, **(env or {})))
    return Outcome(result.returncode, result.stdout, result.stderr, time.time() - start)


def clean_failure(outcome, prog):
    """Exit 2 with exactly one ``prog: error: ...`` line (after any progress lines, the last)
    and no traceback."""
    lines = without_progress(outcome.stderr).strip().splitlines()
    return (outcome.returncode == 2 and len(lines) == 1
            and lines[0].startswith(prog + ": error: ") and "Traceback" not in outcome.stderr)


def outputs_of(prefix):
    """Files of a checkpoint prefix and any temporary file of it."""
    directory, name = os.path.split(os.path.abspath(prefix))
    if not os.path.isdir(directory):
        return []
    return sorted(f for f in os.listdir(directory)
                  if f.startswith(name + "-") or f.startswith("." + name))


# --- damaged Keras files ----------------------------------------------------

def mutate(data, rng, others):
    """One damaged variant of ``data``: truncated, bytes overwritten, or spliced
    with another file."""
    kind = rng.choice(["truncate", "flip", "splice", "zero-block"])
    if kind == "truncate":
        return kind, data[:rng.randrange(0, len(data))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 64)):
            # damage the structure (start) more often than the bulk weights
            position = rng.randrange(0, min(len(out), 1 << 16) if rng.random() < 0.7 else len(out))
            out[position] = rng.randrange(256)
        return kind, bytes(out)
    if kind == "zero-block":
        out = bytearray(data)
        start = rng.randrange(0, len(out))
        out[start:start + rng.randint(1, 1 << 20)] = b"\0" * len(out[start:start + (1 << 20)])
        return kind, bytes(out[:len(data)])
    other = rng.choice(others)
    cut = rng.randrange(0, min(len(data), len(other)))
    return kind, data[:cut] + other[cut:]


def fuzz_converter(files, cases, seed, workdir):
    """Feed ``cases`` damaged variants of ``files`` to keras2mxnet.

    Returns counts: cases, converted (damage that left a valid file), clean
    errors, and failures (anything else: a traceback, a crash, a hang, output
    left behind after an error) with examples.
    """
    rng = random.Random(seed)
    blobs = {path: open(path, "rb").read() for path in files}
    counts = collections.Counter()
    failures = []
    for case in range(cases):
        source = rng.choice(list(blobs))
        kind, data = mutate(blobs[source], rng, [b for p, b in blobs.items() if p != source])
        suffix = ".keras" if source.endswith(".keras") else (
            ".weights.h5" if source.endswith(".weights.h5") else ".h5")
        damaged = os.path.join(workdir, "case%s" % suffix)
        with open(damaged, "wb") as f:
            f.write(data)
        prefix = os.path.join(workdir, "out", "case%d" % case)
        counts["cases"] += 1
        try:
            outcome = run_tool("keras2mxnet", [damaged, "-o", prefix])
        except subprocess.TimeoutExpired:
            counts["failures"] += 1
            failures.append((case, kind, os.path.basename(source), "hang"))
            continue
        if outcome.returncode == 0:
            counts["converted"] += 1
        elif clean_failure(outcome, "keras2mxnet") and not outputs_of(prefix):
            counts["clean_errors"] += 1
        else:
            counts["failures"] += 1
            failures.append((case, kind, os.path.basename(source),
                             outcome.stderr.strip().splitlines()[-1:] or outcome.returncode))
        for leftover in outputs_of(prefix):
            os.unlink(os.path.join(os.path.dirname(prefix), leftover))
    return dict(counts), failures


# --- kills during checkpoint writes -----------------------------------------

def checkpoint_state(prefix):
    """Which complete checkpoint ``prefix`` holds: the sha256 of its params
    and symbol, or ``None`` if the files do not form one."""
    from xception_mx.errors import InputError
    from xception_mx.checkpoint.reading import load_params, load_symbol, read_meta
    try:
        meta = read_meta(prefix)
        load_symbol(prefix)
        load_params(prefix, meta.epoch)
    except InputError:
        return None
    return tuple((meta.file_record(key) or {}).get("sha256") for key in ("params", "symbol"))


# --- full disk ----------------------------------------------------------------

def full_disk_conversions(source, prefix, limits):
    """Convert over an existing checkpoint with the file size capped (``ulimit
    -f``) at each of ``limits`` bytes: a clean error and the previous files
    intact, or a complete new checkpoint."""
    counts = collections.Counter()
    first = run_tool("keras2mxnet", [source, "-o", prefix, "--force"])
    assert first.returncode == 0, first.stderr
    before = {f: sha256_file(os.path.join(os.path.dirname(prefix), f))
              for f in outputs_of(prefix)}
    for limit in limits:
        outcome = run_tool("keras2mxnet", [source, "-o", prefix, "--force"],
                           file_size_limit=limit)
        counts["cases"] += 1
        after = {f: sha256_file(os.path.join(os.path.dirname(prefix), f))
                 for f in outputs_of(prefix)}
        if outcome.returncode == 0 and checkpoint_state(prefix) is not None:
            counts["completed"] += 1
        elif clean_failure(outcome, "keras2mxnet") and after == before:
            counts["clean_errors_previous_intact"] += 1
        else:
            counts["lost_or_unclear"] += 1
    return dict(counts)
