"""The library API: ``xception_mx.load / convert / parity`` do what the commands do."""
import json
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

import xception_mx as xm
from xception_mx._moved import MOVED
from xception_mx.serving.fast import load_fast_network
from xception_mx.images.decode import load_images
from xception_mx.serving.loading import load_network, run_batches

from conftest import PHOTOS, run_tool

SIZE = (96, 96)


@pytest.fixture(scope="module")
def ten(keras_file_10_classes, tmp_path_factory):
    """The 10-class model converted by the library API at 96x96: (keras file, prefix)."""
    keras_file, _ = keras_file_10_classes
    prefix = str(tmp_path_factory.mktemp("api") / "ten")
    paths = xm.convert(keras_file, prefix, input_shape=SIZE)
    assert sorted(paths) == ["meta", "params", "symbol"]
    return keras_file, prefix


def printed_predictions(stdout):
    """``{file: [(name, probability)...]}`` from xception-predict's output."""
    found, current = {}, None
    for line in stdout.splitlines():
        if not line.startswith("  "):
            current = found.setdefault(line, [])
        else:
            _, probability, name = line.split(None, 2)
            current.append((name, float(probability)))
    return found


def test_every_public_name_is_importable_from_the_package():
    assert len(set(xm.__all__)) == len(xm.__all__)
    namespace = {}
    exec("from xception_mx import *", namespace)
    assert set(xm.__all__) <= set(namespace)
    for name in xm.__all__:
        assert getattr(xm, name) is namespace[name]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_load_predicts_the_classes_xception_predict_prints(ten, precision):
    """In a fresh process each, as a user runs them (the ISA cap and AMX apply to a
    process's first computation)."""
    _, prefix = ten
    code = ("import json, sys, xception_mx as xm; m = xm.load(sys.argv[1], precision=sys.argv[2]);"
            " print(json.dumps(m.predict(sys.argv[3:], top=3)))")
    library = subprocess.run([sys.executable, "-c", code, prefix, precision] + PHOTOS,
                             capture_output=True, text=True)
    assert library.returncode == 0, library.stderr
    printed = run_tool("xception-predict", prefix, *PHOTOS, "--top", 3, "--precision", precision)
    assert printed.returncode == 0, printed.stderr
    expected = printed_predictions(printed.stdout)
    for photo, ranked in zip(PHOTOS, json.loads(library.stdout)):
        assert [name for name, _ in ranked] == [name for name, _ in expected[photo]]
        np.testing.assert_allclose([p for _, p in ranked], [p for _, p in expected[photo]],
                                   atol=1e-4)
    if precision == "fp32":          # --json: one object per line, the same numbers unrounded
        as_json = run_tool("xception-predict", prefix, *PHOTOS, "--top", 3, "--json")
        rows = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert [row["image"] for row in rows] == PHOTOS, as_json.stdout
        for row, ranked in zip(rows, json.loads(library.stdout)):
            assert sorted(row) == ["image", "top"]
            assert [name for name, _ in row["top"]] == [name for name, _ in ranked]
            np.testing.assert_allclose([p for _, p in row["top"]], [p for _, p in ranked],
                                       atol=1e-6)


def test_predict_takes_paths_pil_images_and_arrays_alike(ten, tmp_path):
    """A PNG file (decoded alike by TF and Pillow; a JPEG file is decoded as TF does, which a
    PIL image the user decoded is not), the PIL image of it and its pixels."""
    _, prefix = ten
    model = xm.load(prefix)
    with Image.open(PHOTOS[1]) as img:
        pil = img.copy()
    pil.save(tmp_path / "photo.png")
    by_path, by_pil, by_array = (model.predict(images, top=10)[0] for images in
                                 ([str(tmp_path / "photo.png")], [pil], [np.asarray(pil)]))
    assert by_path == by_pil == by_array
    assert model.predict(PHOTOS[1]) == model.predict([PHOTOS[1]])      # one image alone
    folder = os.path.dirname(PHOTOS[1])             # a folder: each row with its image's path
    named = model.predict_images([folder, pil], top=10)
    last = "image %d" % len(PHOTOS)                 # its place, the folder's images before it
    assert [path for path, _ in named] == sorted(PHOTOS) + [last]
    assert dict(named)[PHOTOS[1]] == model.predict(PHOTOS[1], top=10)[0]
    assert named[-1] == (last, by_pil)


def test_predict_gives_the_plain_checkpoints_softmax_on_preprocessed_photos(ten):
    """Against the checkpoint run unfused by Gluon on ``x / 127.5 - 1`` of the photos: the
    convention, the ranking and the class names, independently of the fast path."""
    _, prefix = ten
    plain, _ = load_network(prefix, output="logits")
    logits = plain(mx.nd.array(load_images(PHOTOS, SIZE))).asnumpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for row, ranked in zip(expected, xm.load(prefix).predict(PHOTOS, top=4)):
        order = np.argsort(-row)[:4]
        assert [name for name, _ in ranked] == ["class %d" % i for i in order]
        np.testing.assert_allclose([p for _, p in ranked], row[order], atol=1e-5)


def test_logits_runs_the_fast_network_xception_predict_runs(ten):
    _, prefix = ten
    model = xm.load(prefix, batch_size=4)
    x = model.inputs(PHOTOS)
    assert x.shape == (len(PHOTOS), 3) + SIZE and x.dtype == np.float32
    logits = model.logits(x)
    fast, _ = load_fast_network(prefix, precision="fp32", batch_size=4,
                                pad_channels=model.padded)
    np.testing.assert_allclose(logits, run_batches(fast, x, 4), atol=1e-5)
    assert type(model.network) is type(fast)


def test_bad_arguments_raise_the_commands_one_line_errors(ten, tmp_path):
    _, prefix = ten
    with pytest.raises(xm.InputError, match=r"missing-symbol.json: no such file \(expected an "
                                            r"MXNet checkpoint PREFIX-symbol.json\)"):
        xm.load(str(tmp_path / "missing"))
    with pytest.raises(xm.InputError, match="precision must be one of auto, fp32, bf16, int8"):
        xm.load(prefix, precision="fp16")
    with pytest.raises(xm.InputError, match=r"takes NCHW input of shape \(N, 3, 96, 96\)"):
        xm.load(prefix).logits(np.zeros((1, 3, 299, 299), np.float32))
    with pytest.raises(xm.InputError, match="expected pixel values in 0..255"):
        xm.load(prefix).predict([np.full((20, 20, 3), 300.0)])


def test_a_checkpoint_written_without_meta_loads_and_predicts(ten, tmp_path):
    """Symbol and params alone (as MXNet writes them) are a checkpoint: the meta's defaults
    apply (299x299, Keras' input convention)."""
    keras_file, _ = ten
    prefix = str(tmp_path / "x299")                 # built for the size the meta would say
    xm.convert(keras_file, prefix)
    for suffix in ("-symbol.json", "-0000.params"):
        shutil.copy(prefix + suffix, str(tmp_path / "bare") + suffix)
    model = xm.load(str(tmp_path / "bare"))
    assert model.input_size == (299, 299)
    ranked = model.predict(PHOTOS[0], top=3)[0]
    probabilities = [p for _, p in ranked]
    assert [name[:6] for name, _ in ranked] == ["class "] * 3       # 10 classes, no labels
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1


def test_parity_passes_a_true_conversion_and_fails_beyond_its_tolerance(ten):
    keras_file, prefix = ten
    result = xm.parity(keras_file, prefix, PHOTOS[:1], random=1)
    assert result and result.passed and 0 < result.max_abs <= 1e-4, str(result)
    assert "PASS" in str(result) and len(result.records) == 2
    strict = xm.parity(keras_file, prefix, PHOTOS[:1], atol=result.max_abs / 2)
    assert not strict and "FAIL" in str(strict)
    assert strict.report()["passed"] is False


def test_modules_that_moved_keep_their_old_names_with_a_deprecation_warning():
    code = """
import importlib, warnings
import xception_mx
from xception_mx._moved import MOVED, RENAMED
for old, new in sorted(MOVED.items()):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    parts = new.split("+")               # a module split in several
    if len(parts) == 1 and new not in RENAMED:
        assert module is importlib.import_module(new), old
    for name in parts:
        part = importlib.import_module(name)
        public = [n for n in vars(part) if not n.startswith("_")]
        assert public and all(getattr(module, n) is getattr(part, n) for n in public), old
        renamed = RENAMED.get(name, {})    # under their old names too
        assert all(getattr(module, o) is getattr(part, n) for o, n in renamed.items()), old
    assert [w.category for w in caught] == [DeprecationWarning], (old, caught)
    assert all(p in str(caught[0].message) for p in parts), caught[0].message
from xception_mx.fast import load_fast_network     # the 0.1 README's import
print(len(MOVED))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(MOVED) >= 10


def test_python_dash_m_prints_the_moved_table_and_the_commands_without_warnings():
    """``python -m xception_mx._moved`` printed runpy's RuntimeWarning (the package imports
    that module first); ``python -m xception_mx moved`` prints the table alone, and without
    an argument the version and every console script of setup.cfg."""
    import configparser
    from conftest import ROOT
    done = subprocess.run([sys.executable, "-m", "xception_mx", "moved"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert len(done.stdout.splitlines()) == len(MOVED)
    assert done.stdout.splitlines()[0].split()[0] == sorted(MOVED)[0]
    done = subprocess.run([sys.executable, "-m", "xception_mx"], capture_output=True,
                          text=True, timeout=300)
    setup = configparser.ConfigParser()
    setup.read(ROOT + "/setup.cfg")
    scripts = [line.split("=")[0].strip() for line in
               setup["options.entry_points"]["console_scripts"].strip().splitlines()]
    assert done.returncode == 0 and done.stderr == ""
    assert all(name in done.stdout for name in scripts) and xm.__version__ in done.stdout
