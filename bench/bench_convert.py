"""Conversion, process start to files written: keras2mxnet vs Keras' own loader."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, alternate, summary, table, time_command  # noqa: E402

KERAS_ROUTE = """
import sys
import keras
model = keras.applications.Xception(weights=None)
model.load_weights(sys.argv[1])
model.save(sys.argv[2])
"""


def run(weights, repeats=5):
    out = tempfile.mkdtemp()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    runs = {
        "keras2mxnet": lambda: time_command(
            [os.path.join(BIN, "keras2mxnet"), weights, "-o", os.path.join(out, "x"),
             "--force"], env),
        "Keras loader (Xception().load_weights + save .keras)": lambda: time_command(
            [sys.executable, "-c", KERAS_ROUTE, weights, os.path.join(out, "k.keras")], env),
    }
    times = alternate(runs, repeats)
    ours = summary(times["keras2mxnet"])
    rows = []
    for name, samples in times.items():
        best, median = summary(samples)
        rows.append([name, "%.2f" % best, "%.2f" % median, "%.2fx" % (median / ours[1])])
    size = os.path.getsize(weights) / 1e6
    text = ("Converting a %.0f MB Keras weights file (%s), %d alternating runs each, "
            "seconds from process start to files written; ratio = median time / "
            "keras2mxnet's median (higher: keras2mxnet faster).\n\n" % (
                size, os.path.basename(weights), repeats))
    return text + table(["route", "min s", "median s", "time vs keras2mxnet"], rows), {
        "keras2mxnet_median_s": ours[1]}


def run_transfer(demo_dir, repeats=5):
    """keras2mxnet on the keras.io guide's base + head model against plain
    Xception, both written by Keras as ``.keras`` archives at 299x299: what
    reading the architecture and converting the head add."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "scripts", "make_keras_reference.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    files = {"plain Xception (.keras)": os.path.join(demo_dir, "xception_seed0.keras"),
             "base + head (.keras)": os.path.join(demo_dir, "transfer_seed0.keras")}
    for name, path in files.items():
        if not os.path.exists(path):
            extra = ["--transfer", "--classes", "10"] if "head" in name else []
            time_command([sys.executable, script, "--format", "keras", "-o", path] + extra, env)
    out = tempfile.mkdtemp()
    runs = {name: (lambda p=path: time_command(
        [os.path.join(BIN, "keras2mxnet"), p, "-o", os.path.join(out, "x"), "--force"], env))
        for name, path in files.items()}
    times = alternate(runs, repeats)
    plain = summary(times["plain Xception (.keras)"])
    rows = []
    for name, samples in times.items():
        best, median = summary(samples)
        rows.append([name, "%.2f" % best, "%.2f" % median, "%+.2f" % (median - plain[1])])
    transfer = summary(times["base + head (.keras)"])
    text = ("keras2mxnet on a transfer-learning model (preprocess_input, Xception base, GAP, "
            "Dense 256 + BatchNorm, Dropout, Dense 10) against plain Xception, both .keras at "
            "299x299, %d alternating runs each, seconds from process start to files written. "
            "Target: at most 0.2 s more than plain; measured %+.2f s (median).\n\n"
            % (repeats, transfer[1] - plain[1]))
    return text + table(["model", "min s", "median s", "median vs plain"], rows), {
        "extra_s": transfer[1] - plain[1]}
