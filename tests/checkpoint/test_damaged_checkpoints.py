"""A damaged checkpoint (truncated or garbage parameters or symbol, parameters that differ
from the meta's checksums, unreadable metadata) gives xception-predict and xception-parity a
clean error naming what is wrong, no crash."""
import json
import os
import shutil

import pytest

from conftest import PHOTOS
from robustness_harness import clean_failure, run_tool


@pytest.fixture(scope="module")
def checkpoint(keras_files_top, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("ckpt") / "x")
    assert run_tool("keras2mxnet", [keras_files_top["legacy-h5"], "-o", prefix,
                                    "--input-shape", "99", "99"]).returncode == 0
    return prefix


def damaged_copy(prefix, directory, damage):
    out = os.path.join(str(directory), "damaged")
    for suffix in ("-symbol.json", "-0000.params", "-meta.json"):
        shutil.copy(prefix + suffix, out + suffix)
    damage(out)
    return out


def truncate(path, fraction=0.5):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:int(len(data) * fraction)])


def drop_checksums(prefix):
    meta = json.load(open(prefix + "-meta.json"))
    meta.pop("files")
    json.dump(meta, open(prefix + "-meta.json", "w"))


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: truncate(p + "-0000.params"), "sha256 differs"),
    (lambda p: (truncate(p + "-0000.params"), drop_checksums(p)), "not a readable MXNet"),
    (lambda p: (truncate(p + "-0000.params", 1e-7), drop_checksums(p)), "truncated"),
    (lambda p: (open(p + "-0000.params", "wb").write(os.urandom(4096)), drop_checksums(p)),
     "bad header"),
    (lambda p: (truncate(p + "-symbol.json"), drop_checksums(p)), "not a readable MXNet symbol"),
    (lambda p: open(p + "-meta.json", "w").write("{not json"), "unreadable checkpoint metadata"),
], ids=["params-vs-meta", "params-truncated", "params-tiny", "params-garbage",
        "symbol-truncated", "meta-garbage"])
def test_damaged_checkpoints_give_clean_errors(damage, fragment, checkpoint, tmp_path,
                                               keras_files_top):
    bad = damaged_copy(checkpoint, tmp_path, damage)
    predict = run_tool("xception-predict", [bad, PHOTOS[0]])
    assert clean_failure(predict, "xception-predict") and fragment in predict.stderr, \
        predict.stderr
    parity = run_tool("xception-parity", ["--keras", keras_files_top["legacy-h5"], "--mxnet",
                                          bad, "--random", "1"])
    assert clean_failure(parity, "xception-parity") and fragment in parity.stderr, \
        parity.stderr
