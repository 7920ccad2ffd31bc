"""A head that forks at its end into several outputs (issue #33: one trunk, then
``Dense(14, sigmoid)``, ``Dense(1, sigmoid)`` and a linear ``Dense(1)``), written by Keras 2
and Keras 3: one MXNet symbol with one output per Keras output, in Keras' order, named after
the Keras layers; parity per output, predictions per output, back to Keras; fine-tuning it
is refused."""
import json

import mxnet as mx
import numpy as np
import pytest

import own_models
from conftest import PHOTOS, assert_bad_input, run_tool
from xception_mx import load, load_images

OUTPUTS = ["diseases", "gender", "age"]
CASES = {   # name: (builder, file suffix)
    "nested-keras3.keras": (own_models.multi_output, ".keras"),
    "flattened-keras3.h5": (own_models.flattened_multi_output, ".h5"),
    "flattened-keras2.h5": (own_models.keras2_multi_output, ".h5"),
}


def converted(case, folder):
    builder, suffix = CASES[case]
    model = own_models.built(builder)
    path = own_models.save(model, str(folder / ("model" + suffix)))
    result = run_tool("keras2mxnet", path, "-o", folder / "mx")
    assert result.returncode == 0, result.stderr
    return model, path, folder / "mx"


def keras_outputs(model, files):
    x = load_images(files, model.input_shape[1:3])                 # x / 127.5 - 1
    return model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_three_output_head_converts_to_one_symbol_and_passes_parity_per_output(case,
                                                                                tmp_path):
    model, path, prefix = converted(case, tmp_path)
    symbol = mx.sym.load(str(prefix) + "-symbol.json")
    assert symbol.list_outputs() == [name + "_out_output" for name in OUTPUTS]
    meta = json.loads((tmp_path / "mx-meta.json").read_text())
    assert [(o["name"], o["units"], o["kind"]) for o in meta["model"]["outputs"]] == [
        ("diseases", 14, "scores"), ("gender", 1, "scores"), ("age", 1, "logits")]
    result = run_tool("xception-parity", "--keras", path, "--mxnet", prefix, *PHOTOS,
                      "--random", 2)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in OUTPUTS]
    assert [r[0] for r in rows] == [name for name in OUTPUTS for _ in range(len(PHOTOS) + 2)]
    assert "PASS" in result.stdout and "over 7 inputs and 3 outputs" in result.stdout


@pytest.mark.slow
def test_parity_names_the_first_output_beyond_tolerance(tmp_path):
    _, path, prefix = converted("nested-keras3.keras", tmp_path)
    params_file = str(prefix) + "-0000.params"
    params = mx.nd.load(params_file)
    params["arg:gender_bias"] += 0.5          # the second output only
    mx.nd.save(params_file, params)
    meta_file = tmp_path / "mx-meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["files"]["params"]               # a deliberate edit, not a damaged write
    meta_file.write_text(json.dumps(meta))
    result = run_tool("xception-parity", "--keras", path, "--mxnet", prefix, PHOTOS[0],
                      "--report", tmp_path / "report.json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "first failing output 'gender'" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["first_failing_output"] == "gender"
    worst = {r["output"]: r["max_abs"] for r in report["inputs"]}
    assert worst["diseases"] <= 1e-4 and worst["age"] <= 1e-4 and worst["gender"] > 1e-3


@pytest.mark.slow
def test_predict_gives_each_output_as_keras_does(tmp_path):
    model, _, prefix = converted("nested-keras3.keras", tmp_path)
    diseases, gender, age = keras_outputs(model, PHOTOS)
    got = load(str(prefix)).predict(PHOTOS, top=3)
    for i, row in enumerate(got):
        assert list(row) == OUTPUTS
        order = np.argsort(-diseases[i])[:3]
        assert [name for name, _ in row["diseases"]] == ["class %d" % c for c in order]
        assert np.allclose([p for _, p in row["diseases"]], diseases[i][order], atol=1e-4)
        assert abs(row["gender"][0] - gender[i, 0]) <= 1e-4
        assert abs(row["age"][0] - age[i, 0]) <= 1e-4 * max(1.0, abs(age[i, 0]))
    result = run_tool("xception-predict", prefix, PHOTOS[0], "--top", 2)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "  diseases:" and lines[2].startswith("    1. ")
    assert lines[4] == "  gender: %.4f" % got[0]["gender"][0]
    assert lines[5] == "  age: %.4f" % got[0]["age"][0]


@pytest.mark.slow
def test_mxnet2keras_gives_the_three_outputs_back(tmp_path):
    model, _, prefix = converted("flattened-keras2.h5", tmp_path)
    back = tmp_path / "back.keras"
    result = run_tool("mxnet2keras", prefix, "-o", back)
    assert result.returncode == 0, result.stderr
    keras = own_models.import_keras()
    rebuilt = keras.saving.load_model(str(back))
    assert rebuilt.output_names == OUTPUTS
    for theirs, ours in zip(keras_outputs(model, PHOTOS), keras_outputs(rebuilt, PHOTOS)):
        assert np.abs(theirs - ours).max() <= 1e-4 * max(1.0, float(np.abs(theirs).max()))


@pytest.mark.slow
def test_fine_tuning_a_multi_output_checkpoint_is_refused_in_one_line(tmp_path):
    _, _, prefix = converted("nested-keras3.keras", tmp_path)
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        (data / name / "x.jpg").write_bytes(open(PHOTOS[0], "rb").read())
    result = run_tool("xception-finetune", data, "--pretrained", prefix, "--out",
                      tmp_path / "run")
    assert_bad_input(result, "--pretrained", "3 outputs (diseases, gender, age)",
                     "training several heads is not supported")
    assert not (tmp_path / "run").exists()
