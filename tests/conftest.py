"""Shared fixtures: seeded Keras Xceptions saved by Keras itself, in every format."""
import ctypes
import gc
import os
import subprocess
import sys

# auto's vendor rules, not its measurement (serving.tuning: seconds to minutes per checkpoint
# shape, in every test that runs the fast path); its own tests ask for "measure"
os.environ.setdefault("XCEPTION_MX_AUTO", "rules")
import xception_mx  # noqa: F401  (before MXNet: it sets MXNet's thread count)
import mxnet  # noqa: F401  (MXNet must be imported before TensorFlow)
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the seeded reference models the demo writes too (scripts/reference_models.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))

import keras_files  # noqa: E402
import reference_models  # noqa: E402
from xception_mx.progress import without_progress  # noqa: E402
from xception_mx import keras_side  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
PHOTOS = sorted(os.path.join(DATA, n) for n in os.listdir(DATA) if n.endswith(".jpg"))
BIN = os.path.dirname(sys.executable)
# Residual layers whose auto-names point at another block's layer: only their
# shapes tell which is which.
SWAPPED_AUTO_NAMES = {"conv2d": "conv2d_3", "conv2d_3": "conv2d",
                      "batch_normalization": "batch_normalization_2",
                      "batch_normalization_2": "batch_normalization"}


def run_tool(name, *args, cwd=None, env=None):
    """Run an installed console script (``env``: variables added to this environment);
    return the CompletedProcess."""
    return subprocess.run([os.path.join(BIN, name)] + [str(a) for a in args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))


def failure_output(result, tail=3000):
    """What a failed command's assertion shows: the Python stacks a native crash printed
    (``commands.runner.report_crashes``; the list of extension modules after them would push
    them out of the tail), then the ends of stdout and stderr."""
    both = result.stdout + result.stderr
    stacks = [line for line in both.splitlines() if "Fatal Python error" in line or
              "Thread 0x" in line or "Current thread" in line or 'File "' in line]
    return "\n".join(stacks[-60:] + [result.stdout[-tail:], result.stderr[-tail:]])


def assert_bad_input(result, *fragments):
    """Exit status 2 and one line on stderr holding every fragment (besides the progress
    lines of work done before the failure), no traceback."""
    lines = without_progress(result.stderr).strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def process_alive(pid):
    """Whether process ``pid`` runs (a zombie no one reaped, in a container whose first
    process reaps none, does not)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def cpu_file(directory, vendor, flags):
    """A /proc/cpuinfo of two processors."""
    path = directory / ("%s-%s" % (vendor, flags.replace(" ", "_")))
    path.write_text("processor\t: 0\nvendor_id\t: %s\nflags\t\t: %s\n\n"
                    "processor\t: 1\n" % (vendor, flags))
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def memory_back_after_each_module():
    """A module's freed memory goes back to the system after it: glibc keeps freed heap in its
    arenas, and a worker grew to 11 GB over the suite, so that two workers and a job's
    processes outgrew the machine's 24 GB (a rank killed, a worker lost: stop 47's CI).
    ``malloc_trim`` gave back 0.7 GB of 2.7 after the Keras parity module alone."""
    yield
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):     # not glibc
        pass


@pytest.fixture(scope="session")
def keras_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("keras")


@pytest.fixture(scope="session")
def reference_model():
    """Seed-0 Xception with a 1000-class top, logits output, non-trivial BNs."""
    return reference_models.reference_model(seed=0, include_top=True, classes=1000)


@pytest.fixture(scope="session")
def keras_files_top(reference_model, keras_dir):
    """``{format name: path}``: the reference model in every format users hold."""
    files = {}
    for fmt in keras_side.FORMATS:
        files[fmt] = str(keras_dir / ("top_%s%s" % (fmt, keras_side.SUFFIX[fmt])))
        keras_side.save_keras(reference_model, files[fmt], fmt)
    legacy = files["legacy-h5"]
    files["keras2-h5"] = keras_files.rewrite_legacy(
        legacy, str(keras_dir / "top_keras2.h5"), keras_files.keras2_layer_name,
        keras_files.keras2_weight_name, keras_version="2.0.8")
    files["keras1-h5"] = keras_files.rewrite_legacy(
        legacy, str(keras_dir / "top_keras1.h5"), keras_files.keras1_layer_name,
        keras_files.keras1_weight_name, keras_version="1.2.2")
    files["split-names-shuffled-h5"] = keras_files.rewrite_legacy(
        legacy, str(keras_dir / "top_split_shuffled.h5"),
        lambda n: SWAPPED_AUTO_NAMES.get(n, n),
        split_layer_names=3, shuffle_seed=5)
    files["tf-keras-weights-h5"] = keras_files.save_with_keras2(
        reference_model, str(keras_dir / "top_tf_keras_weights.h5"), whole_model=False)
    files["tf-keras-model-h5"] = keras_files.save_with_keras2(
        reference_model, str(keras_dir / "top_tf_keras_model.h5"), whole_model=True)
    files["tf-keras-archive"] = keras_files.save_with_keras2(
        reference_model, str(keras_dir / "top_tf_keras.keras"), whole_model=True)
    files["weights-h5-unnamed"] = keras_files.strip_keras3_names(
        files["weights-h5"], str(keras_dir / "top_unnamed.weights.h5"))
    return files


@pytest.fixture(scope="session")
def notop_model(reference_model):
    return reference_models.same_weights(reference_model, include_top=False)


@pytest.fixture(scope="session")
def keras_file_notop(notop_model, keras_dir):
    path = str(keras_dir / "notop.h5")
    return keras_side.save_keras(notop_model, path, "legacy-h5")


@pytest.fixture(scope="session")
def keras_file_10_classes(reference_model, keras_dir):
    """The reference base with a 10-class head, as a user's fine-tuned model."""
    model = keras_side.keras_xception(classes=10)
    rng = np.random.RandomState(3)
    weights = reference_model.get_weights()[:-2]
    weights += [rng.normal(0, 0.05, (2048, 10)).astype(np.float32),
                rng.normal(0, 0.5, 10).astype(np.float32)]
    model.set_weights(weights)
    return keras_side.save_keras(model, str(keras_dir / "ten.keras"), "keras"), model


@pytest.fixture(scope="session")
def base(keras_files_top, tmp_path_factory):
    """A small training job's inputs: the reference converted at 71x71
    (``base / "x71"``) and 24 synthetic images of 3 classes (``base / "data"``)."""
    from xception_mx.conversion import convert_file
    from shapes_dataset import write_shapes_dataset
    directory = tmp_path_factory.mktemp("dist")
    convert_file(keras_files_top["legacy-h5"], str(directory / "x71"), input_shape=(71, 71))
    write_shapes_dataset(str(directory / "data"), per_class=8, seed=2, size=(80, 80))
    return directory


@pytest.fixture(scope="session")
def work(tmp_path_factory, keras_files_top):
    """Synthetic textures (train/val, large and small) and the reference
    converted at 71x71."""
    # Session-scoped: the fine-tuning tests (test_finetune.py, test_finetune_resume.py,
    # test_data_parallel_contexts.py) share it, computed once per test process.
    from xception_mx.conversion import convert_file
    from shapes_dataset import write_shapes_dataset
    root = tmp_path_factory.mktemp("finetune")
    write_shapes_dataset(str(root / "train"), per_class=30, seed=0)
    write_shapes_dataset(str(root / "val"), per_class=10, seed=1)
    write_shapes_dataset(str(root / "small"), per_class=8, seed=2, size=(80, 80))
    convert_file(keras_files_top["legacy-h5"], str(root / "x71"), input_shape=(71, 71))
    return root


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """``{name: (Keras file, checkpoint prefix)}``: users' own models (issue #12) converted,
    each on first use (own_model_checkpoints.py).  Session-scoped: the parity, predict,
    fine-tuning and mxnet2keras tests of these models share them across their folders."""
    from own_model_checkpoints import Converted
    return Converted(tmp_path_factory.mktemp("transfer_tools"))


@pytest.fixture(scope="session")
def checkpoints(reference_model, tmp_path_factory):
    """The deployment tests' checkpoints (``deploy/export_checkpoints.py``): ``{name: prefix}``
    of demo, transfer (fine-tuned), gray and multi, made once per test process."""
    from export_checkpoints import served_checkpoints
    return served_checkpoints(reference_model, tmp_path_factory.mktemp("served"))
