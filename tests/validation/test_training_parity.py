"""``xception-parity --training`` (issues #28, #40): one training step of the converted
checkpoint in MXNet, as xception-finetune takes it, against the same step in the Keras that
wrote the file, with the file's compiled loss, regularizers and optimizer: loss, logits, every
layer's training-mode output, BatchNorm moving statistics, every gradient (in float64 on both
sides, within ten times its own rounding and no floor) and the weights after two steps of the
optimizer.  It passes on plain and transfer models of Keras 2 and 3, the keras.io guide's
``Dense(1)`` model with L2 on its head and a base layer among them, and fails naming the layer
under each named fault: a BatchNorm's epsilon or momentum changed, 2% added to one layer's
gradient, the regularizers dropped, Keras 2's moving variance left uncorrected."""
import json

import pytest

import own_models
from conftest import PHOTOS, assert_bad_input, run_tool
from xception_mx.validation.training_parity import run_training_parity
from xception_mx.validation.training_report import culprit

KINDS = ["output", "loss", "logits", "moving_mean", "moving_variance", "gradient"]
DEFAULT_OPTIMIZERS = ["keras-sgd", "keras-adam", "keras-adamw"]   # of a file without a recipe
def compiled(builder, recipe, keras=None):
    """``builder``'s model compiled with ``recipe(keras library)``."""
    def build():
        model = builder()
        model.compile(**recipe(keras() if keras else own_models.import_keras()))
        return model
    return build


def rmsprop_smoothed(k):
    return dict(optimizer=k.optimizers.RMSprop(1e-3, momentum=0.5),
                loss=k.losses.CategoricalCrossentropy(label_smoothing=0.1))


def sgd_decayed(k):
    return dict(optimizer=k.optimizers.SGD(k.optimizers.schedules.ExponentialDecay(
        0.05, 1, 0.5), momentum=0.9, nesterov=True),
        loss=k.losses.SparseCategoricalCrossentropy())


def adam_clipped(k):
    return dict(optimizer=k.optimizers.Adam(1e-3, clipnorm=0.1),
                loss="sparse_categorical_crossentropy")


def sgd_momentum(k):
    return dict(optimizer=k.optimizers.SGD(0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy")


COMPILED = {"plain-keras3.keras": "SGD", "training-layers-keras3.keras": "SGD",
            "nested-keras3.keras": "RMSprop", "sequential-bn-head-keras3.keras": "SGD",
            "flattened-bn-head-keras2.h5": "Adam", "guide-binary-l2-keras3.keras": "Adam"}
CASES = {   # name: (builder, file suffix, keras2mxnet options)
    "plain-keras3.keras": (compiled(lambda: own_models.grayscale_plain(channels=3),
                                    sgd_momentum), ".keras", ["--input-shape", 71, 71]),
    "plain-keras2.h5": (lambda: own_models.grayscale_plain(
        keras=own_models.import_tf_keras(), channels=3), ".h5", ["--input-shape", 71, 71]),
    "nested-keras3.keras": (compiled(own_models.nested, rmsprop_smoothed), ".keras", []),
    "sequential-bn-head-keras3.keras": (compiled(own_models.sequential, sgd_decayed), ".keras",
                                        []),
    "flattened-bn-head-keras2.h5": (compiled(own_models.keras2_flattened_bn_head, adam_clipped,
                                             own_models.import_tf_keras), ".h5", []),
    "training-layers-keras3.keras": (compiled(own_models.training_layers, sgd_momentum),
                                     ".keras", []),
    "guide-binary-l2-keras3.keras": (own_models.guide_binary, ".keras", []),
}
BUILT, CONVERTED = {}, {}


def converted(case, folder):
    builder, suffix, options = CASES[case]
    if case not in BUILT:
        BUILT[case] = builder()
    model = BUILT[case]
    path = own_models.save(model, str(folder / ("model" + suffix)))
    result = run_tool("keras2mxnet", path, "-o", folder / "mx", *options)
    assert result.returncode == 0, result.stderr
    return model, path, folder / "mx"


def training_parity(path, prefix, folder, env=None, labels_from=None, options=()):
    report = folder / "training.json"
    images = ["--labels-from", labels_from] if labels_from else PHOTOS[:3]
    result = run_tool("xception-parity", "--keras", path, "--mxnet", prefix, *images,
                      "--random", 2, "--training", "--report", report, *options, env=env)
    return result, (json.loads(report.read_text()) if report.exists() else None)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(set(CASES) - {"training-layers-keras3.keras"}))
def test_one_training_step_agrees_with_keras(case, checkpoint, tmp_path):
    path, prefix = checkpoint(case)
    model = BUILT[case]
    labels_from = None
    if case == "plain-keras3.keras":          # a class folder gives images and labels
        labels_from = tmp_path / "classes"
        for c, photo in enumerate(PHOTOS[:5]):
            (labels_from / ("class%d" % c)).mkdir(parents=True)
            (labels_from / ("class%d" % c) / "x.jpg").write_bytes(open(photo, "rb").read())
    result, report = training_parity(path, prefix, tmp_path, labels_from=labels_from)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and report["passed"]
    kinds = {r["what"] for r in report["records"]}
    assert kinds == set(KINDS + ([COMPILED[case]] if case in COMPILED else DEFAULT_OPTIMIZERS))
    gradients = [r for r in report["records"] if r["what"] == "gradient"]
    trainable = sum(len(l.trainable_weights) for l in model.layers
                    if not type(l).__name__.startswith(("Functional", "Sequential")))
    nested = [l for l in model.layers if type(l).__name__ in ("Functional", "Sequential")]
    trainable += sum(len(l.trainable_weights) for n in nested for l in n.layers)
    assert len(gradients) == trainable
    for r in report["records"]:
        assert r["deviation"] <= r["tolerance"], r
    outputs = [r for r in report["records"] if r["what"] == "output"]
    assert max(r["deviation"] for r in outputs) <= 1e-4
    assert report["classes"] == max(2, model.output_shape[-1])
    if labels_from:
        assert report["labels"][:5] == [0, 1, 2, 3, 4] and len(report["labels"]) == 7
    else:
        assert len(report["labels"]) == 5
    if case in COMPILED:
        assert "training with the Keras file's recipe, %s(" % COMPILED[case] in report["recipe"]
    else:
        assert "no optimizer in the Keras file" in report["recipe"]
    if case.startswith("guide"):   # the guide's recipe and L2, a Dense(1) logit on two classes
        assert "training with the Keras file's recipe, Adam(learning_rate=0.0001" in \
            report["recipe"] and "BinaryCrossentropy" in report["recipe"]
        assert report["regularizers"] == ("block14_sepconv1 pointwise_regularizer (l1 0, l2 "
                                          "0.05), out kernel_regularizer (l1 0, l2 0.05)")
        assert report["classes"] == 2 and set(report["labels"]) <= {0, 1}


@pytest.mark.slow
def test_a_batchnorm_changed_on_the_mxnet_side_fails_naming_it(checkpoint, tmp_path):
    """One run, two faults: block 2's momentum (its moving statistics differ, its output does
    not) and block 5's epsilon (its training-mode output differs, named first)."""
    path, prefix = checkpoint("sequential-bn-head-keras3.keras")
    result, report = training_parity(path, prefix, tmp_path, env={
        "XCEPTION_MX_BN_FAULT": "block2_sepconv1_bn:momentum=0.9,block5_sepconv1_bn:epsilon=0.01"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: first layer beyond tolerance: block5_sepconv1_bn (output" in result.stdout
    assert report["first_layer_beyond_tolerance"] == "block5_sepconv1_bn"
    assert not report["passed"]

    def first_beyond(kinds):
        return next(r["keras_layer"] for r in report["records"]
                    if r["what"] in kinds and r["deviation"] > r["tolerance"])
    assert first_beyond(("output",)) == "block5_sepconv1_bn"
    assert first_beyond(("moving_mean", "moving_variance")) == "block2_sepconv1_bn"


@pytest.mark.slow
def test_the_step_of_freeze_bn_agrees_with_keras_calling_batchnorm_in_inference(tmp_path):
    """``--freeze-bn``: every BatchNorm on its moving statistics, gamma and beta trained, as
    Keras trains a BatchNorm called with ``training=False``; on a model whose augmentation,
    noise and Dropout act in training, switched off on both sides for the comparison."""
    model, path, prefix = converted("training-layers-keras3.keras", tmp_path)
    result, report = training_parity(path, prefix, tmp_path, options=["--freeze-bn"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["passed"] and report["freeze_bn"]
    assert set(report["identity_in_keras"]) >= {"flip", "rotation", "zoom", "shift", "contrast",
                                                "brightness", "pixel_noise", "channel_drop",
                                                "drop", "gauss_drop", "alpha_drop"}
    gradients = {r["keras_layer"] for r in report["records"] if r["what"] == "gradient"}
    assert "block1_conv1_bn" in gradients and "block14_sepconv2_bn" in gradients
    for r in report["records"]:
        assert r["deviation"] <= r["tolerance"], r


def test_training_options_are_checked_in_one_line(tmp_path):
    result = run_tool("xception-parity", "--keras", tmp_path / "m.keras", "--mxnet",
                      tmp_path / "mx", "--labels-from", tmp_path)
    assert_bad_input(result, "--labels-from goes with --training")
    result = run_tool("xception-parity", "--keras", tmp_path / "m.keras", "--mxnet",
                      tmp_path / "mx", "--freeze-bn")
    assert_bad_input(result, "--freeze-bn goes with --training")


@pytest.fixture
def checkpoint(tmp_path_factory):
    """``checkpoint(case) -> (Keras file, MXNet prefix)``, each case converted once."""
    def get(case):
        if case not in CONVERTED:
            CONVERTED[case] = converted(case, tmp_path_factory.mktemp("converted"))[1:]
        return CONVERTED[case]
    return get


def beyond_tolerance(case, checkpoint, monkeypatch, fault):
    """``(records beyond tolerance, the layer the verdict names)`` of the step comparison
    (in process, no optimizer) under ``XCEPTION_MX_FAULT=fault``."""
    path, prefix = checkpoint(case)
    monkeypatch.setenv("XCEPTION_MX_FAULT", fault)
    records, _ = run_training_parity(path, str(prefix), PHOTOS[:3], random_count=2,
                                     optimizers=False)
    found = culprit(records)
    return [r for r in records if r.deviation > r.tolerance], found and found.keras_layer


@pytest.mark.slow
@pytest.mark.parametrize("case, layer", [("plain-keras3.keras", "block12_sepconv1"),
                                         ("guide-binary-l2-keras3.keras", "block13_sepconv1")])
def test_two_percent_more_on_one_layers_gradient_fails_naming_that_layer_only(
        case, layer, checkpoint, monkeypatch):
    beyond, named = beyond_tolerance(case, checkpoint, monkeypatch, "gradient=%s*1.02" % layer)
    assert named == layer
    assert {(r.what, r.keras_layer) for r in beyond} == {("gradient", layer)}
    assert all(0.019 < r.deviation < 0.021 for r in beyond)


@pytest.mark.slow
@pytest.mark.parametrize("case, fault, named, kinds, layers", [
    # the loss and the two layers the file regularizes
    ("guide-binary-l2-keras3.keras", "drop-regularizers", "out", {"loss", "gradient"},
     {None, "out", "block14_sepconv1"}),
    # every BatchNorm's moving variance on a feature map, and nothing else
    ("plain-keras2.h5", "no-keras2-variance", "block1_conv1_bn", {"moving_variance"}, None),
], ids=["regularizers-dropped", "keras2-variance-uncorrected"])
def test_what_the_mxnet_side_leaves_out_fails_where_it_acts(case, fault, named, kinds, layers,
                                                            checkpoint, monkeypatch):
    beyond, first = beyond_tolerance(case, checkpoint, monkeypatch, fault)
    assert first == named
    assert {r.what for r in beyond} == kinds
    assert layers is None or {r.keras_layer for r in beyond} == layers
