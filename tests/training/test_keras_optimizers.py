"""Keras' optimizers in MXNet: ``--optimizer keras-sgd/keras-adam/keras-adamw/keras-rmsprop/
keras-nadam`` update weights exactly as Keras' own ``SGD``, ``Adam``, ``AdamW``, ``RMSprop`` and
``Nadam`` do (Keras 3 and tf-keras), across a learning-rate change, with Keras' decoupled weight
decay and its ``clipnorm``, ``global_clipnorm`` and ``clipvalue``; flags an optimizer does not
take are refused in one line."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import own_models
from conftest import assert_bad_input, run_tool
from xception_mx.training.recipe import keras_optimizers
from xception_mx.training.recipe.optimizers import SETTING_OF_KERAS, resolve_optimizer
from xception_mx.training.train import make_trainer
from xception_mx.keras_side import import_keras

LEARNING_RATES = [0.1, 0.1, 0.02, 0.02, 0.05, 0.05]        # a step schedule, then up again
CASES = [   # (ours, Keras class, Keras arguments)
    ("keras-sgd", "SGD", {}),
    ("keras-sgd", "SGD", {"momentum": 0.9}),
    ("keras-sgd", "SGD", {"momentum": 0.9, "nesterov": True}),
    ("keras-sgd", "SGD", {"momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("keras-adam", "Adam", {}),
    ("keras-adam", "Adam", {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3,
                            "weight_decay": 0.01}),
    ("keras-adamw", "AdamW", {}),
    ("keras-adamw", "AdamW", {"weight_decay": 0.1}),
    ("keras-rmsprop", "RMSprop", {}),
    ("keras-rmsprop", "RMSprop", {"rho": 0.8, "momentum": 0.9, "centered": True,
                                  "epsilon": 1e-3, "weight_decay": 0.01}),
    ("keras-nadam", "Nadam", {}),
    ("keras-nadam", "Nadam", {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3}),
    ("keras-sgd", "SGD", {"momentum": 0.9, "clipnorm": 1.0}),
    ("keras-adam", "Adam", {"global_clipnorm": 5.0}),
    ("keras-rmsprop", "RMSprop", {"clipvalue": 0.5}),
]
SHAPES = [(3, 3, 4, 8), (8,), (16, 5)]


def steps(seed=0):
    rng = np.random.RandomState(seed)
    start = [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]
    grads = [[rng.normal(0, 1, s).astype(np.float32) for s in SHAPES] for _ in LEARNING_RATES]
    return start, grads


def keras_trajectory(keras, cls, arguments, start, grads, scale):
    import tensorflow as tf
    variables = [tf.Variable(w) for w in start]
    optimizer = getattr(keras.optimizers, cls)(learning_rate=LEARNING_RATES[0] * scale,
                                               **arguments)
    weights = []
    for lr, step in zip(LEARNING_RATES, grads):
        optimizer.learning_rate = lr * scale
        optimizer.apply_gradients(zip([tf.constant(g) for g in step], variables))
        weights.append([v.numpy() for v in variables])
    return weights


def mxnet_trajectory(name, arguments, start, grads, scale, momentum=None, wd=0.0):
    """The weights after each step of ``make_trainer``'s optimizer (what xception-finetune
    builds), fed the same gradients."""
    params = gluon.ParameterDict()
    for i, w in enumerate(start):
        params.get("w%d" % i, shape=w.shape, init=mx.init.Constant(mx.nd.array(w)))
    params.initialize(ctx=mx.cpu())
    given = {"momentum": momentum, "wd": wd}
    given.update({SETTING_OF_KERAS[k]: v for k, v in (arguments or {}).items()})
    trainer = make_trainer(params, resolve_optimizer(name, LEARNING_RATES[0] * scale, given),
                           "device")
    weights = []
    for lr, step in zip(LEARNING_RATES, grads):
        trainer.set_learning_rate(lr * scale)
        with autograd.record():          # d/dw sum(w * g) = g: the same gradients, by backward
            total = mx.nd.add_n(*[(p.data() * mx.nd.array(g)).sum()
                                  for p, g in zip(params.values(), step)])
        total.backward()
        keras_optimizers.step(trainer, 1)
        weights.append([p.data().asnumpy() for p in params.values()])
    return weights


@pytest.mark.parametrize("keras_version", ["keras3", "tf-keras"])
@pytest.mark.parametrize("name, cls, arguments", CASES,
                         ids=["%s-%s" % (c[0], "-".join(sorted(c[2])) or "defaults")
                              for c in CASES])
def test_each_step_updates_the_weights_as_keras_optimizer_does(name, cls, arguments,
                                                                keras_version):
    keras = import_keras() if keras_version == "keras3" else own_models.import_tf_keras()
    scale = 0.1 if "adam" in name or "rmsprop" in name else 1.0
    start, grads = steps()
    theirs = keras_trajectory(keras, cls, arguments, start, grads, scale)
    ours = mxnet_trajectory(name, arguments, start, grads, scale)
    for step, (k, m) in enumerate(zip(theirs, ours)):
        for a, b, w in zip(k, m, start):
            moved = np.abs(a - w).max()
            assert moved > 1e-3                                    # the weights do move
            assert np.abs(a - b).max() <= 1e-6 * max(1.0, np.abs(a).max()), (step, name)


@pytest.mark.parametrize("name, arguments", [("sgd", {"momentum": 0.9}),
                                             ("nag", {"momentum": 0.9, "nesterov": True})])
def test_mxnet_momentum_optimizers_are_keras_sgd_without_weight_decay_only(name, arguments):
    """The manual's mapping: MXNet's sgd and nag are Keras' SGD (also across a learning-rate
    change); their coupled wd is not Keras' decoupled weight_decay."""
    keras = import_keras()
    start, grads = steps(1)
    plain = keras_trajectory(keras, "SGD", arguments, start, grads, 1.0)
    decayed = keras_trajectory(keras, "SGD", dict(arguments, weight_decay=0.05), start, grads,
                               1.0)
    ours = mxnet_trajectory(name, None, start, grads, 1.0, momentum=0.9)
    coupled = mxnet_trajectory(name, None, start, grads, 1.0, momentum=0.9, wd=0.05)

    def worst(a, b):
        return max(np.abs(x - y).max() for k, m in zip(a, b) for x, y in zip(k, m))
    assert worst(plain, ours) <= 1e-5
    assert worst(decayed, coupled) > 1e-2


@pytest.mark.parametrize("flags, fragment", [
    (["--optimizer", "keras-sgd", "--wd", "0.01"], "--wd is MXNet's coupled weight decay"),
    (["--optimizer", "keras-adam", "--momentum", "0.9"],
     "--momentum does not apply to --optimizer keras-adam"),
    (["--optimizer", "keras-sgd", "--beta1", "0.8"],
     "--beta1 does not apply to --optimizer keras-sgd"),
    (["--optimizer", "nag", "--weight-decay", "0.01"],
     "--weight-decay applies to Keras' optimizers"),
    (["--optimizer", "sgd", "--nesterov"], "--nesterov applies to Keras' optimizers"),
    (["--optimizer", "keras-nadam", "--rho", "0.8"],
     "--rho does not apply to --optimizer keras-nadam"),
    (["--optimizer", "keras-sgd", "--clipnorm", "1", "--clipvalue", "1"],
     "--clipnorm and --clipvalue exclude each other"),
    (["--optimizer", "nag", "--global-clipnorm", "1"],
     "--global-clipnorm applies to Keras' optimizers"),
])
def test_flags_an_optimizer_does_not_take_are_refused_in_one_line(flags, fragment, tmp_path):
    result = run_tool("xception-finetune", tmp_path, "--out", tmp_path / "run", *flags)
    assert_bad_input(result, fragment)
    assert not (tmp_path / "run").exists()


def test_unset_settings_take_keras_defaults_for_keras_optimizers():
    base = {"momentum": None, "nesterov": False, "wd": None, "weight_decay": None,
            "beta1": None, "beta2": None, "epsilon": None}
    assert resolve_optimizer("keras-adamw", 0.001, base).settings["weight_decay"] == 0.004
    adam = resolve_optimizer("keras-adam", 0.001, base).settings
    assert (adam["beta1"], adam["beta2"], adam["epsilon"], adam["weight_decay"]) == (
        0.9, 0.999, 1e-7, None)
    assert resolve_optimizer("keras-sgd", 0.01, base).settings["momentum"] == 0.0
    nag = resolve_optimizer("nag", 0.01, base).settings
    assert (nag["momentum"], nag["wd"]) == (0.9, 1e-4)
