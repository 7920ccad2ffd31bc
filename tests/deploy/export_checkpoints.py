"""The checkpoints every deployment format is tested on, and xception-predict's answers for
them: plain Xception at 299x299 with ImageNet's 1000 classes (the demo's checkpoint), a
fine-tuned transfer model (xception-finetune's export, class names from its folders), a
grayscale transfer model and a multi-output model."""
import json

import numpy as np

import own_models
from conftest import PHOTOS, run_tool
from xception_mx.conversion import convert_file

PROBABILITY_ATOL = 1e-5      # the same fp32 network in two processes: measured 1e-9


def converted_own(builder, folder, name):
    path = own_models.save(own_models.built(builder), str(folder / (name + ".keras")))
    convert_file(path, str(folder / name))
    return str(folder / name)


def finetuned(prefix, folder):
    """A transfer model fine-tuned for one epoch on three classes of textures: its export."""
    from shapes_dataset import write_shapes_dataset
    write_shapes_dataset(str(folder / "data"), per_class=6, seed=4, size=(80, 80))
    result = run_tool("xception-finetune", folder / "data", "--out", folder / "run",
                      "--pretrained", prefix, "--epochs", "1", "--batch-size", "6",
                      "--val-split", "0.25", "--freeze-bn")
    assert result.returncode == 0, result.stderr[-3000:]
    return str(folder / "run" / "model")


def served_checkpoints(reference_model, folder):
    """``{name: checkpoint prefix}`` of the four models, made in ``folder``."""
    demo = str(folder / "demo.h5")
    reference_model.save(demo)
    convert_file(demo, str(folder / "demo"))
    nested = converted_own(own_models.nested, folder, "nested")
    return {"demo": str(folder / "demo"), "transfer": finetuned(nested, folder),
            "gray": converted_own(own_models.grayscale_transfer, folder, "gray"),
            "multi": converted_own(own_models.multi_output, folder, "multi")}


def predicted(prefix, *flags):
    """xception-predict --json of the photos: ``{photo: record}``."""
    result = run_tool("xception-predict", prefix, *PHOTOS, "--json", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return {json.loads(line)["image"]: json.loads(line) for line in result.stdout.splitlines()}


def assert_same_classes(served, expected):
    """Two top-k lists of ``[name, probability]``: the same names in the same order, the
    probabilities within ``PROBABILITY_ATOL``."""
    assert [name for name, _ in served] == [name for name, _ in expected]
    np.testing.assert_allclose([p for _, p in served], [p for _, p in expected],
                               rtol=0, atol=PROBABILITY_ATOL)
