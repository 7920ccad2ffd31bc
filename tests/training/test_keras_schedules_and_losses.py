"""The learning-rate schedules and losses of a Keras recipe, in MXNet: each schedule gives
Keras' learning rate at every optimizer step (Keras 3 and tf-keras), and each loss Keras'
per-sample value on the same logits and labels."""
import mxnet as mx
import numpy as np
import pytest

import own_models
from xception_mx.keras_side import import_keras
from xception_mx.training.recipe.losses import Loss, loss_block
from xception_mx.training.recipe.schedules import checked, learning_rate_at

SCHEDULES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.6}),
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.6,
                          "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [5, 12, 20], "values": [0.1, 0.05, 0.02, 0.004]}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 25}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 25, "alpha": 0.1}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 20, "warmup_target": 0.2,
                     "warmup_steps": 6}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5,
                          "staircase": True}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 12, "power": 2.0}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 12, "power": 0.5,
                         "end_learning_rate": 0.01, "cycle": True}),
]


@pytest.mark.parametrize("keras_version", ["keras3", "tf-keras"])
@pytest.mark.parametrize("cls, arguments", SCHEDULES,
                         ids=["%s-%d" % (c, i) for i, (c, _) in enumerate(SCHEDULES)])
def test_each_schedule_gives_keras_learning_rate_at_every_step(cls, arguments, keras_version):
    keras = import_keras() if keras_version == "keras3" else own_models.import_tf_keras()
    theirs = getattr(keras.optimizers.schedules, cls)(**arguments)
    saved = checked({"class_name": cls, "config": theirs.get_config()}, "test")
    rates = []
    for step in range(40):
        expected = float(theirs(step))
        rates.append(expected)
        assert learning_rate_at(saved, step) == pytest.approx(expected, rel=1e-6, abs=1e-9), step
    assert len(set(rates)) > 2                                    # the schedule does change


@pytest.mark.parametrize("keras_version", ["keras3", "tf-keras"])
@pytest.mark.parametrize("cls, arguments, softmax", [
    ("SparseCategoricalCrossentropy", {"from_logits": True}, False),
    ("SparseCategoricalCrossentropy", {}, True),
    ("CategoricalCrossentropy", {"from_logits": True}, False),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.2}, False),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, True),
])
def test_each_loss_is_keras_per_sample_loss_on_the_logits(cls, arguments, softmax,
                                                          keras_version):
    """MXNet trains on the logits; a softmax head compiled with ``from_logits=False`` is the
    same loss in Keras, which takes the softmax's logits."""
    import tensorflow as tf
    keras = import_keras() if keras_version == "keras3" else own_models.import_tf_keras()
    rng = np.random.RandomState(0)
    logits = rng.normal(0, 3, (8, 5)).astype(np.float32)
    labels = rng.randint(0, 5, 8)
    target = labels if cls.startswith("Sparse") else np.eye(5, dtype=np.float32)[labels]
    output = keras.layers.Activation("softmax")(tf.constant(logits)) if softmax else logits
    theirs = getattr(keras.losses, cls)(reduction=None if keras_version == "keras3" else
                                        "none", **arguments)(target, output)
    ours = loss_block(Loss(cls, arguments.get("label_smoothing", 0.0)), 5)(
        mx.nd.array(logits), mx.nd.array(labels)).asnumpy()
    # both against the float64 value: float32's log-softmax rounds by a few ulps of the
    # largest logit
    logp = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(1))[:, None]
    smoothing = arguments.get("label_smoothing", 0.0)
    onehot = np.eye(5)[labels] * (1 - smoothing) + smoothing / 5
    exact = -(onehot * logp).sum(1)
    atol = 32 * np.finfo(np.float32).eps * np.abs(logits).max()
    np.testing.assert_allclose(np.asarray(theirs), exact, rtol=0, atol=atol)
    np.testing.assert_allclose(ours, exact, rtol=0, atol=atol)


@pytest.mark.parametrize("keras_version", ["keras3", "tf-keras"])
@pytest.mark.parametrize("arguments, sigmoid", [({"from_logits": True}, False),
                                                ({"label_smoothing": 0.2}, True)])
def test_binary_crossentropy_is_keras_on_the_logit(arguments, sigmoid, keras_version):
    """A binary head's loss on its one logit (a sigmoid head's: Keras takes the logit)."""
    import tensorflow as tf
    keras = import_keras() if keras_version == "keras3" else own_models.import_tf_keras()
    rng = np.random.RandomState(1)
    logits = rng.normal(0, 3, (8, 1)).astype(np.float32)
    labels = rng.randint(0, 2, 8)
    output = keras.layers.Activation("sigmoid")(tf.constant(logits)) if sigmoid else logits
    theirs = keras.losses.BinaryCrossentropy(
        reduction=None if keras_version == "keras3" else "none", **arguments)(
        labels.reshape(-1, 1).astype(np.float32), output)
    ours = loss_block(Loss("BinaryCrossentropy", arguments.get("label_smoothing", 0.0)), 2)(
        mx.nd.array(logits), mx.nd.array(labels)).asnumpy()
    x = logits[:, 0].astype(np.float64)
    smoothing = arguments.get("label_smoothing", 0.0)
    y = labels * (1 - smoothing) + smoothing / 2
    exact = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    atol = 32 * np.finfo(np.float32).eps * np.abs(logits).max()
    np.testing.assert_allclose(np.asarray(theirs), exact, rtol=0, atol=atol)
    np.testing.assert_allclose(ours, exact, rtol=0, atol=atol)
