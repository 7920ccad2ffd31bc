"""Every entry point runs MXNet on all available cores unless the user chose."""
import os
import subprocess
import sys

import pytest

MODULES = ["xception_mx.conversion.cli", "xception_mx.validation.cli", "xception_mx.serving.predict",
           "xception_mx.training.finetune", "xception_mx.training.pack",
           "xception_mx.serving.quantize"]


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
