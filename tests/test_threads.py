"""Every entry point runs MXNet on all available cores unless the user chose."""
import os
import subprocess
import sys

import pytest

MODULES = ["xception_mx.commands.keras2mxnet", "xception_mx.commands.parity",
           "xception_mx.commands.predict", "xception_mx.commands.finetune",
           "xception_mx.commands.pack", "xception_mx.commands.quantize"]


# MXNet's own OpenMP thread count: the libgomp it links, which MXNet configures when
# it is imported (cores - 1 unless OMP_NUM_THREADS is set by then; setting the
# variable after the import changes nothing, so the environment alone proves nothing)
MXNET_THREADS = "ctypes.CDLL('libgomp.so.1').omp_get_max_threads()"


@pytest.mark.parametrize("module", MODULES)
def test_entry_points_use_all_cores_unless_set(module):
    code = ("import ctypes, os, %s, mxnet; print(%s, os.environ['OMP_NUM_THREADS'], "
            "len(os.sched_getaffinity(0)))" % (module, MXNET_THREADS))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    mxnet_threads, variable, cores = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env,
        check=True).stdout.split()
    assert mxnet_threads == variable == cores
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(env, OMP_NUM_THREADS="1"), check=True).stdout.split()
    assert chosen[:2] == ["1", "1"]


def test_the_thread_count_is_read_by_mxnet_at_import_so_it_must_be_set_before():
    """Why the entry points set it first: afterwards, MXNet keeps cores - 1."""
    code = ("import ctypes, os, mxnet; os.environ['OMP_NUM_THREADS'] = '%d'; print(%s)"
            % (len(os.sched_getaffinity(0)), MXNET_THREADS))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True).stdout.split()[-1]
    assert int(late) == max(len(os.sched_getaffinity(0)) - 1, 1)


def test_a_library_user_who_imports_mxnet_first_is_told_how_to_get_every_core():
    """``import mxnet`` before ``import xception_mx`` leaves MXNet on cores - 1 threads,
    silently until now: one warning naming the fix; none when the order is right or the
    user chose the count."""
    cores = len(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}

    def warnings_of(code, **extra):
        return subprocess.run([sys.executable, "-W", "default", "-c", code],
                              capture_output=True, text=True, env=dict(env, **extra),
                              check=True).stderr
    late = warnings_of("import mxnet, xception_mx, xception_mx.conversion, xception_mx.validation")
    if cores == 1:
        assert "RuntimeWarning" not in late           # cores - 1 is every core here
        return
    assert late.count("RuntimeWarning") == 1, late
    assert ("on %d of %d cores" % (cores - 1, cores)) in late
    assert ("OMP_NUM_THREADS=%d before importing mxnet" % cores) in late
    assert "RuntimeWarning" not in warnings_of("import xception_mx, mxnet")
    assert "RuntimeWarning" not in warnings_of("import mxnet, xception_mx", OMP_NUM_THREADS="1")


# Which engine runs the operators: NaiveEngine runs each in the calling thread, so a failing
# kernel raises at the call; the threaded engines defer the error to the result's first read.
ENGINE_PROBE = """
import sys
sys.argv[0] = sys.argv[1]
import os, xception_mx, mxnet as mx
try:
    y = mx.nd.take(mx.nd.arange(3), mx.nd.array([10]), mode="raise")
    print("deferred")
    y.wait_to_read()
except mx.MXNetError:
    print("raised", os.environ.get("MXNET_ENGINE_TYPE"))
"""


def engine_probe(command, **env):
    environ = {k: v for k, v in os.environ.items() if k != "MXNET_ENGINE_TYPE"}
    return subprocess.run([sys.executable, "-c", ENGINE_PROBE, "/venv/bin/" + command],
                          capture_output=True, text=True, env=dict(environ, **env),
                          check=True)


def test_serving_commands_run_operators_in_the_calling_thread_and_say_nothing_of_it():
    """xception-predict and xception-evaluate run MXNet's NaiveEngine (1.2-1.5x at batch 1,
    bench/NOTES.md) without MXNet's "start using engine" line on stderr; training commands
    keep the threaded engine; a user's MXNET_ENGINE_TYPE wins."""
    for command in ("xception-predict", "xception-evaluate"):
        result = engine_probe(command)
        assert result.stdout.split() == ["raised", "NaiveEngine"]
        assert "engine" not in result.stderr, result.stderr
    assert engine_probe("xception-finetune").stdout.split() == ["deferred", "raised", "None"]
    chosen = engine_probe("xception-predict", MXNET_ENGINE_TYPE="ThreadedEngine")
    assert chosen.stdout.split() == ["deferred", "raised", "ThreadedEngine"]
