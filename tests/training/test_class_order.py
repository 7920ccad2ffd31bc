"""A fine-tuning that keeps a checkpoint's head trains each image toward its own class: the
data's class names are matched to the checkpoint's (``PREFIX-labels.txt``), whatever order
either lists them in, and the export keeps the checkpoint's order.  (It used to number the
classes by sorted folder name, so a head whose labels file was not sorted was trained and
exported with its classes swapped, silently.)"""
import csv
import json
import shutil

import mxnet as mx
import pytest

from conftest import assert_bad_input, run_tool
from xception_mx.checkpoint.files import write_checkpoint
from xception_mx.checkpoint.reading import load_params, load_symbol, read_meta
from xception_mx.training.run_setup import Data

SIZE = ("--input-shape", "71", "71")
ORDER = [2, 0, 1]                      # the permuted checkpoint's class k is the sorted 2, 0, 1


def finetune(base, out, pretrained, *extra):
    return run_tool("xception-finetune", base / "data", "--out", out, "--pretrained",
                    pretrained, *SIZE, "--batch-size", "8", "--workers", "0", "--seed", "0",
                    *extra)


@pytest.fixture(scope="module")
def heads(base, tmp_path_factory):
    """A 3-class head exported by xception-finetune (labels sorted: the data's folders), and
    the same function with its classes listed in another order: rows and labels permuted."""
    folder = tmp_path_factory.mktemp("heads")
    made = finetune(base, folder / "run", base / "x71", "--epochs", "1")
    assert made.returncode == 0, made.stderr[-3000:]
    sorted_prefix = str(folder / "run" / "model")
    arg_params, aux_params = load_params(sorted_prefix, 0)
    arrays = {k: v.asnumpy() for k, v in arg_params.items()}
    for name in ("predictions_weight", "predictions_bias"):     # a head that tells classes
        arrays[name] = arrays[name] * 20.0                      # apart, so labels matter
    meta = read_meta(sorted_prefix)
    names = open(sorted_prefix + "-labels.txt").read().split()
    aux = {k: v.asnumpy() for k, v in aux_params.items()}
    prefixes = {}
    for kind, order in (("sorted", [0, 1, 2]), ("permuted", ORDER)):
        prefix = str(folder / kind)
        head = dict(arrays, predictions_weight=arrays["predictions_weight"][order],
                    predictions_bias=arrays["predictions_bias"][order])
        write_checkpoint(prefix, load_symbol(sorted_prefix), head, aux,
                         dict(meta, classes=[names[i] for i in order]))
        with open(prefix + "-labels.txt", "w") as f:
            f.write("\n".join(names[i] for i in order) + "\n")
        prefixes[kind] = prefix
    return prefixes, names


def epoch_metrics(out):
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))[0]


@pytest.mark.slow
def test_a_kept_head_trains_each_image_toward_its_own_class_whatever_the_label_order(
        base, heads, tmp_path):
    prefixes, names = heads
    runs = {}
    for kind, prefix in prefixes.items():
        out = tmp_path / kind
        result = finetune(base, out, prefix, "--epochs", "1", "--lr", "1e-7", "--val-split",
                          "0.25")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "head kept" in result.stdout
        runs[kind] = epoch_metrics(out)
        labels = (out / "model-labels.txt").read_text().split()
        assert labels == open(prefix + "-labels.txt").read().split()     # its order kept
        exported = mx.nd.load(str(out / "model-0000.params"))
        assert exported["arg:predictions_weight"].shape == (3, 2048)
    # the same function on the same images with the same labels: the same loss and accuracy
    for key in ("loss", "val_loss", "val_accuracy"):
        assert abs(float(runs["sorted"][key]) - float(runs["permuted"][key])) <= 1e-4 * max(
            1.0, abs(float(runs["sorted"][key]))), (key, runs)
    record = json.loads((tmp_path / "permuted" / "epoch-0001.json").read_text())
    assert record["classes"] == [names[i] for i in ORDER]


def test_data_labels_follow_the_checkpoint_order_and_other_names_are_refused(base, heads,
                                                                             tmp_path):
    prefixes, names = heads
    config = {"input_shape": [71, 71], "train": str(base / "data"), "val": None,
              "val_split": 0.0, "seed": 0, "batch_size": 4, "min_crop": 0.08, "workers": 0}
    data = Data(config)
    folder_of = [data.train_set.source.name(i).split("/")[-2] for i in data.train_set.indices]
    data.use_class_order([names[i] for i in ORDER], "permuted-labels.txt")
    for position, folder in enumerate(folder_of):
        assert data.classes[int(data.train_set[(position, 0)][1])] == folder
    other = tmp_path / "other"
    shutil.copytree(str(base / "data"), str(other))
    (other / names[0]).rename(other / "spoon")
    result = run_tool("xception-finetune", other, "--out", tmp_path / "run", "--pretrained",
                      prefixes["permuted"], *SIZE, "--epochs", "1", "--workers", "0",
                      "--batch-size", "8")
    assert_bad_input(result, "the data's classes differ from those of the head kept from",
                     "permuted-labels.txt: spoon not among them, %s not in the data" % names[0])
    assert not (tmp_path / "run").exists()
