"""Every entry point runs MXNet on all available cores unless the user chose."""
import os
import subprocess
import sys

import pytest

MODULES = ["convert.cli", "validate.cli", "xception_mx.predict", "xception_mx.finetune",
           "xception_mx.pack", "xception_mx.quantize"]


@pytest.mark.parametrize("module", MODULES)
def test_entry_points_use_all_cores_unless_set(module):
    code = ("import os, %s, mxnet; print(os.environ['OMP_NUM_THREADS'], "
            "len(os.sched_getaffinity(0)))" % module)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    threads, cores = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, env=env, check=True).stdout.split()
    assert threads == cores
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(env, OMP_NUM_THREADS="1"), check=True).stdout.split()
    assert chosen[0] == "1"
