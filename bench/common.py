"""Shared benchmark helpers: the demo's files, workloads in their own processes, alternating
rounds, machine description, tables."""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
DEMO = os.path.join(ROOT, "demo")
WEIGHTS = os.path.join(DEMO, "xception_seed0.h5")
PREFIX = os.path.join(DEMO, "xception")
PHOTOS = os.path.join(ROOT, "tests", "data")
GFLOP_PER_IMAGE = 2 * 8.4     # Xception: about 8.4 G multiply-adds per 299x299 image
# Alternating rounds per measurement; BENCH_ROUNDS=5 where the noise needs more.
REPEATS = int(os.environ.get("BENCH_ROUNDS", "3"))
# The engine xception-predict and xception-evaluate run MXNet on (xception_mx/_threads.py):
# the fast-path rows are measured as those commands run them.
SERVING_ENV = {"MXNET_ENGINE_TYPE": "NaiveEngine"}
# The peers' venv (make bench-peers) and its worker.
PEERS_PYTHON = os.path.join(ROOT, ".venv-peers", "bin", "python")


def workload(name, env=None, **kwargs):
    """One workload in a fresh process, its JSON result: ``bench/workloads.py NAME`` in this
    venv, or ``peers.NAME``: ``bench/peers.py NAME`` in the peers' venv."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    if name.startswith("peers."):
        argv = [PEERS_PYTHON, os.path.join(ROOT, "bench", "peers.py"), name[len("peers."):]]
    else:
        argv = [sys.executable, os.path.join(ROOT, "bench", "workloads.py"), name]
    result = subprocess.run(argv + [json.dumps(kwargs)], capture_output=True, text=True,
                            env=env, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (name, result.stderr[-3000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def repeated(runs):
    """``{name: [result, ...]}`` over REPEATS alternating rounds; ``runs``: ``{name:
    (workload, kwargs[, environment])}``."""
    results = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, (workload_name, kwargs, *env) in runs.items():
            results[name].append(workload(workload_name, *env, **kwargs))
    return results


def rate_stats(results, key):
    """``(min, median, max)`` images/s over the rounds (``key``: the batch, or None)."""
    values = [r["images_per_s"][key] if isinstance(r["images_per_s"], dict)
              else r["images_per_s"] for r in results]
    return min(values), statistics.median(values), max(values)


def ceiling(peak_ops, keras_rate):
    """The best ratio to Keras any network can reach on this machine: the practical peak over
    Keras' rate, both in operations per second."""
    return peak_ops / (keras_rate * GFLOP_PER_IMAGE)


def machine():
    """One paragraph describing the machine, versions and thread settings."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = subprocess.run(
        [sys.executable, "-c", "import mxnet, numpy, h5py; import tensorflow as tf, keras; "
         "print('mxnet %s, tensorflow %s, keras %s, numpy %s, h5py %s' % (mxnet.__version__, "
         "tf.__version__, keras.__version__, numpy.__version__, h5py.__version__))"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    cores = len(os.sched_getaffinity(0))
    return ("%s (%s), %d cores available, Python %s; %s. Threads: OMP_NUM_THREADS=%s "
            "(xception-mx entry points set it to the available cores unless set)." % (
                cpu, isa(), cores, platform.python_version(), versions.stdout.strip(),
                os.environ.get("OMP_NUM_THREADS", "unset")))


def isa():
    """The vector instruction sets oneDNN can use here, from /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(l for l in f if l.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "ISA unknown"
    names = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"),
             ("avx512_bf16", "AVX-512 BF16"), ("amx_tile", "AMX")]
    return ", ".join(name for flag, name in names if flag in flags) or "no AVX2"


def time_command(argv, env=None):
    """Wall-clock seconds of one process, start to exit; fails loudly."""
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(argv), result.stderr[-2000:]))
    return elapsed


def alternate(runs, repeats):
    """Run each ``{name: callable}`` ``repeats`` times, alternating; return
    ``{name: [seconds...]}``."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return times


def summary(samples):
    return min(samples), statistics.median(samples)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
