"""Shared benchmark helpers: machine description, repeated timing, tables."""
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


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
