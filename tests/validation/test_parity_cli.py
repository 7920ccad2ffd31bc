"""xception-parity proves a conversion and, when it is wrong, names the layer;
xception-predict agrees with Keras' own top-5."""
import json
import re
import sys

import mxnet as mx
import numpy as np
import pytest

from conftest import DATA, PHOTOS, assert_bad_input, run_tool
from xception_mx.conversion import convert_file
import reference_models
from xception_mx import keras_side
from xception_mx.atomic import sha256_file
from xception_mx.images.decode import load_images
from xception_mx.checkpoint.labels import imagenet_classes


@pytest.fixture(scope="module")
def checkpoints(keras_files_top, tmp_path_factory):
    """The reference converted at 299x299 and at 224x224."""
    directory = tmp_path_factory.mktemp("ckpt")
    prefixes = {}
    for shape in [(299, 299), (224, 224)]:
        prefixes[shape] = str(directory / ("x%d" % shape[0]))
        convert_file(keras_files_top["legacy-h5"], prefixes[shape], input_shape=shape)
    return prefixes


@pytest.mark.slow
@pytest.mark.parametrize("shape, fmt", [((299, 299), "weights-h5"),
                                        ((224, 224), "tf-keras-archive")],
                         ids=["299-weights-h5", "224-tf-keras-archive"])
def test_parity_holds_on_photos_and_a_random_batch(shape, fmt, checkpoints, keras_files_top,
                                                   tmp_path):
    report = tmp_path / "parity.json"
    result = run_tool("xception-parity", "--keras", keras_files_top[fmt], "--mxnet",
                      checkpoints[shape], DATA, "--random", "3", "--seed", "7", "--report",
                      report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "chelsea_cat.jpg" in result.stdout
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["input_size"] == list(shape)
    assert len(data["inputs"]) == len(PHOTOS) + 3
    for record in data["inputs"]:
        assert record["max_abs"] <= 1e-4 and record["top1"] and record["top5"]


def swap_bn_statistics(prefix, layer, out_prefix):
    """A consistent checkpoint (as a faulty converter would write it) with the
    moving mean and variance of one BN layer swapped."""
    params = mx.nd.load(prefix + "-0000.params")
    mean, var = "aux:%s_running_mean" % layer, "aux:%s_running_var" % layer
    params[mean], params[var] = params[var], params[mean]
    mx.nd.save(out_prefix + "-0000.params", params)
    with open(prefix + "-symbol.json") as f, open(out_prefix + "-symbol.json", "w") as g:
        g.write(f.read())
    meta = json.load(open(prefix + "-meta.json"))
    meta["files"]["params"]["sha256"] = sha256_file(out_prefix + "-0000.params")
    json.dump(meta, open(out_prefix + "-meta.json", "w"))


@pytest.mark.slow
def test_corrupted_layer_fails_and_is_named_first_divergent(checkpoints, keras_files_top,
                                                            tmp_path):
    bad = str(tmp_path / "corrupt")
    swap_bn_statistics(checkpoints[(224, 224)], "block5_sepconv2_bn", bad)
    plot, report = tmp_path / "plots" / "layers.png", tmp_path / "reports" / "layers.json"
    result = run_tool("xception-parity", "--keras", keras_files_top["legacy-h5"], "--mxnet",
                      bad, PHOTOS[0], "--random", "1", "--per-layer", "--plot", plot,
                      "--report", report)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "first layer above tolerance (1.0e-04, deviation / max(1, max|keras|)): " \
           "block5_sepconv2_bn" in result.stdout
    assert "FAIL" in result.stdout
    data = json.loads(report.read_text())
    assert data["first_divergent_layer"] == "block5_sepconv2_bn" and data["passed"] is False
    layers = {r["keras_layer"]: r for r in data["layers"]}
    assert layers["block5_sepconv2"]["scaled"] <= 1e-4 < float(
        layers["block5_sepconv2_bn"]["scaled"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_per_layer_table_is_clean_on_a_correct_conversion(checkpoints, keras_files_top,
                                                         tmp_path):
    report = tmp_path / "layers.json"
    result = run_tool("xception-parity", "--keras", keras_files_top["keras"], "--mxnet",
                      checkpoints[(224, 224)], "--random", "2", "--per-layer", "--report",
                      report)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["first_divergent_layer"] is None
    assert len(data["layers"]) == 133   # every Keras layer but the input
    assert max(r["scaled"] for r in data["layers"]) <= 1e-4


def test_parity_bad_inputs(checkpoints, keras_files_top, keras_file_10_classes, tmp_path):
    keras_file, ckpt = keras_files_top["legacy-h5"], checkpoints[(224, 224)]
    assert_bad_input(run_tool("xception-parity", "--keras", tmp_path / "none.h5", "--mxnet",
                              ckpt, "--random", "1"), "none.h5", "no such")
    assert_bad_input(run_tool("xception-parity", "--keras", keras_file, "--mxnet",
                              tmp_path / "nock", "--random", "1"), "nock-symbol.json", "no such")
    assert_bad_input(run_tool("xception-parity", "--keras", keras_file_10_classes[0], "--mxnet",
                              ckpt, "--random", "1"), "ten.keras", "classes=1000")
    assert_bad_input(run_tool("xception-parity", "--keras", keras_file, "--mxnet", ckpt,
                              "--random", "1", "--input-shape", "299", "299"),
                     "--input-shape 299 299", "built for 224x224")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert_bad_input(run_tool("xception-parity", "--keras", keras_file, "--mxnet", ckpt,
                              broken), "broken.jpg")
    assert_bad_input(run_tool("xception-parity", "--keras", keras_file, "--mxnet", ckpt),
                     "nothing to compare")
    assert_bad_input(run_tool("xception-parity", "--keras", keras_file, "--mxnet", ckpt,
                              "--random", "1", "--plot", tmp_path / "p.png"), "--per-layer")


def test_parity_says_what_is_wrong_with_sizes_folders_and_int8(checkpoints, keras_files_top,
                                                              tmp_path):
    """Issue #15, items 5 and 6: no advice to run a command that fails, a
    folder named as a folder, an int8 checkpoint sent to its fp32 source."""
    keras_file, ckpt = keras_files_top["legacy-h5"], checkpoints[(224, 224)]
    result = run_tool("xception-parity", "--keras", keras_file, "--mxnet", ckpt, "--random",
                      "1", "--input-shape", "50", "50")
    assert_bad_input(result, "--input-shape 50 50", "71")
    assert "reconvert" not in result.stderr
    assert_bad_input(run_tool("xception-parity", "--keras", tmp_path, "--mxnet", ckpt,
                              "--random", "1"), "a folder; expected a Keras file")
    quantized = run_tool("xception-quantize", ckpt, "-o", tmp_path / "int8", "--calib-images",
                         DATA)
    assert quantized.returncode == 0, quantized.stderr
    assert_bad_input(run_tool("xception-parity", "--keras", keras_file, "--mxnet",
                              tmp_path / "int8", "--random", "1"), "int8 checkpoint",
                     "fp32 checkpoint it came from", str(ckpt))


def test_predict_takes_folders_as_parity_and_quantize_do(checkpoints):
    result = run_tool("xception-predict", checkpoints[(224, 224)], DATA, "--top", "1")
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert shown == PHOTOS


PREDICTION = re.compile(r"^\s+(\d)\. ([0-9.]+)\s+.* \((n\d{8})\)$")


def test_predict_agrees_with_keras_top5_on_photos(checkpoints, reference_model):
    result = run_tool("xception-predict", checkpoints[(299, 299)], *PHOTOS, "--top", "5")
    assert result.returncode == 0, result.stderr
    synsets = [s for s, _ in imagenet_classes()]
    ours, current = {}, None
    for line in result.stdout.splitlines():
        match = PREDICTION.match(line)
        if match:
            ours[current].append(synsets.index(match.group(3)))
        else:
            current = line.strip()
            ours[current] = []
    keras_model = reference_models.same_weights(reference_model, classifier_activation="softmax")
    keras_probs = keras_side.keras_predict(keras_model, load_images(PHOTOS, (299, 299)))
    for path, probs in zip(PHOTOS, keras_probs):
        assert ours[path] == list(np.argsort(-probs)[:5]), path


def test_predict_does_not_import_tensorflow(checkpoints):
    code = ("import sys; from xception_mx.serving import predict; "
            "r = predict.predict_files(%r, [%r], top=1); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print('ok')"
            % (checkpoints[(299, 299)], PHOTOS[0]))
    import subprocess
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_predict_uses_a_labels_file_for_other_class_counts(keras_file_10_classes, tmp_path):
    prefix = str(tmp_path / "ten")
    convert_file(keras_file_10_classes[0], prefix, input_shape=(99, 99))
    labels = ["label-%d" % i for i in range(10)]
    (tmp_path / "ten-labels.txt").write_text("\n".join(labels) + "\n")
    result = run_tool("xception-predict", prefix, PHOTOS[0], "--top", "3")
    assert result.returncode == 0, result.stderr
    at_99 = reference_models.same_weights(keras_file_10_classes[1], classes=10,
                                          input_shape=(99, 99))
    keras_logits = keras_side.keras_predict(at_99, load_images(PHOTOS[:1], (99, 99)))[0]
    expected = ["label-%d" % i for i in np.argsort(-keras_logits)[:3]]
    assert re.findall(r"label-\d", result.stdout) == expected, result.stdout
    (tmp_path / "short.txt").write_text("a\nb\n")
    assert_bad_input(run_tool("xception-predict", prefix, PHOTOS[0], "--labels",
                              tmp_path / "short.txt"), "short.txt", "2 labels", "10 classes")


@pytest.mark.parametrize("pooling", ["avg", "max", None])
def test_predict_refuses_a_feature_extractor_pooled_or_not(pooling, keras_file_notop, tmp_path):
    """A notop checkpoint gives features, pooled (N, 2048) or not: no softmax
    over them, no 'class 1456' (issue #15, item 3)."""
    prefix = str(tmp_path / "features")
    convert_file(keras_file_notop, prefix, input_shape=(71, 71), pooling=pooling)
    result = run_tool("xception-predict", prefix, PHOTOS[0])
    assert_bad_input(result, "features", "a feature extractor", "not a classifier")
    assert result.stdout == ""


def test_predict_into_a_closed_pipe_stops_quietly(checkpoints):
    """``xception-predict ... | head -1``: no traceback when the reader is gone."""
    import os
    import subprocess
    from conftest import BIN
    reader, writer = os.pipe()
    os.close(reader)                                  # nobody will read
    result = subprocess.run([os.path.join(BIN, "xception-predict"), checkpoints[(224, 224)],
                             DATA], stdout=writer, stderr=subprocess.PIPE, text=True,
                            timeout=300)
    os.close(writer)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_the_verdict_flips_exactly_at_the_tolerance_without_per_layer(checkpoints,
                                                                      keras_files_top, tmp_path):
    """A deviation between --atol and ten times it must fail (exit 1, FAIL) and pass just
    above it: the per-layer check must not be what catches it.  The deviation is this
    conversion's own, measured first."""
    args = ["--keras", keras_files_top["legacy-h5"], "--mxnet", checkpoints[(224, 224)],
            PHOTOS[0], "--random", "1"]
    first = run_tool("xception-parity", *args, "--report", tmp_path / "r.json")
    assert first.returncode == 0, first.stdout + first.stderr
    deviation = max(r["max_abs"] for r in json.loads((tmp_path / "r.json").read_text())["inputs"])
    assert deviation > 0
    below = run_tool("xception-parity", *args, "--atol", "%.6e" % (deviation / 2))
    assert below.returncode == 1, below.stdout + below.stderr
    assert below.stdout.strip().splitlines()[-1].startswith("FAIL"), below.stdout
    above = run_tool("xception-parity", *args, "--atol", "%.6e" % (deviation * 1.01))
    assert above.returncode == 0, above.stdout + above.stderr
    assert above.stdout.strip().splitlines()[-1].startswith("PASS"), above.stdout
