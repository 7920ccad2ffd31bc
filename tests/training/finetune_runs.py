"""xception-finetune runs and their parameters, for the fine-tuning tests
(test_finetune.py, test_finetune_resume.py)."""
import os
import subprocess

import mxnet as mx
import numpy as np

from conftest import BIN
from kill_harness import TRAINING_ATOL


SIZE = ("--input-shape", "71", "71")


def finetune(*args, env=None):
    return subprocess.run([os.path.join(BIN, "xception-finetune")] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, **(env or {})))


def load_params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def assert_same_params(a, b, atol=TRAINING_ATOL):
    """Equal up to the ~1e-8 by which two identical CPU runs can differ."""
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=atol, err_msg=name)
