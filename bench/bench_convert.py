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
