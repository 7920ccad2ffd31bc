"""A few training steps of a seeded transfer model in Keras (``model.fit``, ``shuffle=False``,
fixed batches, Keras' ``SGD(momentum=0.9, nesterov=True)``) and in MXNet from the converted
checkpoint with the same batches and ``keras-sgd``, as xception-finetune steps
(``train_step``): the loss at every step and the head's weights at the end agree.

Both sides run in float64.  In float32, training at this scale is chaotic: a ReLU that one
run's rounding turns off and the other's leaves on sends the trajectories apart (14% of a head
weight's movement after three steps between two float32 runs of Keras itself, XLA and not,
measured on an Intel Xeon), so a bound of what separates Keras from itself let a 25% error on
every head gradient pass.  In float64 no ReLU flips: the bound is ``FACTOR`` x Keras' own
float64 rounding (its float32 run's distance from its float64 run, scaled by the ratio of the
two types' machine epsilons).  The same MXNet run with 5% added to the head's gradients (the
named fault ``XCEPTION_MX_FAULT=gradient=...``) fails it at every head weight."""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

import own_models
from conftest import PHOTOS, run_tool
from xception_mx.images.decode import load_images
from xception_mx.training.recipe.optimizers import resolve_optimizer
from xception_mx.training.train import make_trainer, train_step, trainable_params
from xception_mx.training.own_model_training import build_own_model_network
from xception_mx.validation.training_compare import EPSILON_RATIO, in_float64
from xception_mx.validation.training_step import (float64_twin, keras_training_model,
                                                  mxnet_values, relative, set_mxnet_values)

BATCH, STEPS, LR = 4, 3, 0.01
FACTOR = 10.0
HEAD = ("fc1", "fc1_bn", "logits")
SUFFIX = {"kernel": "weight", "bias": "bias", "gamma": "gamma", "beta": "beta"}
HEAD_FAULT = "gradient=%s*1.05" % "+".join(HEAD)


def keras_fit(model, x, y, library, dtype):
    """Per-step losses of one epoch of ``fit`` in ``dtype`` (Keras logs the running mean:
    undone here)."""
    floatx = library.backend.floatx()
    library.backend.set_floatx(dtype)
    try:
        model.compile(optimizer=library.optimizers.SGD(LR, momentum=0.9, nesterov=True),
                      loss=library.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
        means = []

        class Log(library.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                means.append(float(logs["loss"]))
        model.fit(x.astype(dtype), y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[Log()])
    finally:
        library.backend.set_floatx(floatx)
    return [(k + 1) * m - k * (means[k - 1] if k else 0.0) for k, m in enumerate(means)]


def mxnet_steps(net, start, x, y):
    """Per-step losses and the parameters after ``STEPS`` steps of ``keras-sgd`` in float64
    from ``start``."""
    set_mxnet_values(net, start)
    losses = []
    with in_float64(net):
        trainer = make_trainer(trainable_params(net, False), resolve_optimizer(
            "keras-sgd", LR, {"momentum": 0.9, "nesterov": True}), "device")
        for k in range(STEPS):
            part = slice(k * BATCH, (k + 1) * BATCH)
            step, _ = train_step(net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(),
                                 mx.nd.array(x[part], dtype="float64"),
                                 mx.nd.array(y[part], dtype="float64"), [mx.cpu()])
            losses.append(float(np.mean(step, dtype=np.float64)))
        params = mxnet_values(net)
    return losses, params


def beyond_bounds(ours, params, keras32, keras64, start):
    """The head weights and step losses of an MXNet run beyond ``FACTOR`` x Keras' float64
    rounding (``keras32``, ``keras64``: ``(losses, {path: weights})`` of Keras' runs)."""
    found = []
    for path, w64 in keras64[1].items():
        layer, role = path.split("/")[-2:]
        ours_w = params["%s_%s" % (layer, SUFFIX[role])]
        ours_w = ours_w.T if role == "kernel" else ours_w
        moved = w64 - start[path]
        found.append((path, relative(ours_w, w64, moved),
                      EPSILON_RATIO * relative(keras32[1][path], w64, moved)))
    assert len(found) == 6
    floor = float(np.median([r for _, _, r in found]))
    beyond = [f for f in found if f[1] > FACTOR * max(f[2], floor)]
    for k, (a, b, c) in enumerate(zip(ours, keras32[0], keras64[0])):
        # train_step reports each sample's loss in float32
        rounding = max(EPSILON_RATIO * abs(b - c), np.finfo(np.float32).eps * abs(c))
        if abs(a - c) > FACTOR * rounding:
            beyond.append(("loss of step %d" % k, abs(a - c), rounding))
    return beyond


def head_weights(model):
    return {v.path: np.asarray(v.numpy(), np.float64) for v in model.trainable_weights
            if v.path.split("/")[-2] in HEAD}


@pytest.mark.slow
def test_a_few_steps_follow_keras_fit_and_a_5_percent_head_gradient_error_does_not(
        tmp_path, monkeypatch):
    library = own_models.import_keras()
    user = own_models.built(own_models.sequential)         # no dropout, no augmentation
    path = own_models.save(user, str(tmp_path / "m.keras"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    meta = json.loads((tmp_path / "mx-meta.json").read_text())
    spec, size = meta["model"]["transfer"], tuple(meta["model"]["input_shape"])
    rng = np.random.RandomState(3)
    raw = np.concatenate([load_images(PHOTOS, size, raw=True),
                          rng.uniform(0, 255, (BATCH * STEPS - len(PHOTOS), 3) + size)])
    x = raw.astype(np.float32)                       # this model rescales inside: raw pixels
    y = rng.randint(0, 5, len(x)).astype(np.float32)

    model, _ = keras_training_model(user, "logits")
    twin = float64_twin(model)
    start = head_weights(model)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    keras32 = keras_fit(model, nhwc, y.astype(np.int32), library, "float32"), \
        head_weights(model)
    keras64 = keras_fit(twin, nhwc, y.astype(np.int32), library, "float64"), \
        head_weights(twin)
    assert abs(keras64[0][-1] - keras64[0][0]) > 1e-3                # the steps do change it

    net = build_own_model_network(spec, 5, size, [mx.cpu()], str(tmp_path / "mx"))[0]
    begin = mxnet_values(net)
    assert beyond_bounds(*mxnet_steps(net, begin, x, y), keras32, keras64, start) == []
    monkeypatch.setenv("XCEPTION_MX_FAULT", HEAD_FAULT)
    beyond = beyond_bounds(*mxnet_steps(net, begin, x, y), keras32, keras64, start)
    assert {name for name, _, _ in beyond} >= set(start), beyond
