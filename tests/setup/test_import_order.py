"""MXNet imported after TensorFlow kills the interpreter; ``import xception_mx`` in that order
says so as an ImportError instead.  Each case runs in a fresh process."""
import subprocess
import sys

RULE = "xception_mx must be imported before tensorflow"


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_importing_the_toolkit_after_tensorflow_is_an_import_error_that_states_the_rule():
    done = run_python("import tensorflow\nimport xception_mx")
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: " + RULE), last
    assert "import xception_mx` (or `import mxnet`) first" in last


def test_importing_keras_first_is_refused_the_same_way():
    done = run_python("import keras\nimport xception_mx")
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert RULE in done.stderr.strip().splitlines()[-1]


def test_the_toolkit_first_then_tensorflow_works():
    done = run_python("import xception_mx\nimport tensorflow as tf\n"
                      "print(float(tf.reduce_sum(tf.ones(3))), xception_mx.load)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("3.0 ")
