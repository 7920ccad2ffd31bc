"""The quantities of ``xception-parity --training``, Keras against MXNet, each with the
rounding of Keras' own evaluation measured in the same run (against the model's float64 twin,
``training_step.float64_twin``):

- in float32, as both run: every layer's training-mode output, the loss and logits (within
  ``atol`` or their rounding), and the BatchNorm moving statistics after the step (within their
  rounding alone);
- in float64 on both sides: the gradient of every trainable weight, of the recipe's loss plus
  the regularization.  In float32, a ReLU that one side's rounding turns off and the other's
  leaves on moves every gradient below it by up to about 1e-2; in float64 none does, so each
  layer's gradient passes within ``ROUNDING_FACTOR`` x its own rounding in float64 (the
  larger of Keras' and MXNet's float32 rounding of it against their float64 evaluations,
  scaled by the two types' machine epsilons), with no floor: a 2% error in one layer fails by
  seven orders of magnitude;
- the weights after two steps of each compared optimizer (the file's), both sides fed the
  same gradients (Keras' float32 ones, of each step): the update alone, with the optimizer's
  state after one step, compared relative to how far Keras moved the weights.
"""
import contextlib

import mxnet as mx
import numpy as np

from xception_mx.conversion import layouts
from xception_mx.training.keras2_statistics import bessel_corrected
from xception_mx.training.recipe.optimizers import run_optimizer
from xception_mx.training.train import (forward_backward, learning_rate, make_trainer,
                                        train_step)

from .training_step import (FLOOR_SHARE, ROUNDING_FACTOR, StepRecord, keras2_fused_layers,
                            keras_layer_variables, keras_library, keras_step, mxnet_values,
                            relative, set_mxnet_values, to_keras_layout)

# float64's rounding of a quantity against float32's: the ratio of their machine epsilons
EPSILON_RATIO = float(np.finfo(np.float64).eps / np.finfo(np.float32).eps)
OPTIMIZER_STEPS = 2
# judged by their rounding alone (none measured below their type's machine epsilon): an atol
# of 1e-5 would hide Keras 2's variance correction (about 1e-4 of a moving variance, at a
# rounding of 4e-8)
ROUNDING_ONLY = ("gradient", "moving_mean", "moving_variance")


@contextlib.contextmanager
def in_float64(net):
    """``net`` computing in float64 inside the block (its values then set again)."""
    net.cast("float64")
    try:
        yield
    finally:
        net.cast("float32")


class Sides:
    """What both sides of the comparison train: the Keras model and its float64 twin, the
    MXNet training network, their losses (``keras_loss(labels, logits)``; MXNet's Gluon loss
    and ``regularization``) and the name table's rows."""

    def __init__(self, model, twin, net, canonical, rows, keras_loss, mx_loss, regularization):
        self.model, self.twin, self.net, self.rows = model, twin, net, rows
        self.keras_loss, self.mx_loss, self.regularization = keras_loss, mx_loss, regularization
        self.variables = keras_layer_variables(model, canonical)
        self.twin_variables = keras_layer_variables(twin, canonical)


class Comparison:
    """One batch ``x`` (NCHW) with labels ``y`` through both ``Sides``; ``pairs`` and
    ``probe``/``probe64``: the compared layers and Keras' training-mode outputs of them."""

    def __init__(self, sides, pairs, probe, probe64, x, y, atol, mxnet_outputs):
        self.s, self.pairs, self.probe, self.probe64 = sides, pairs, probe, probe64
        self.x, self.y, self.atol, self.mxnet_outputs = x, y, atol, mxnet_outputs
        self.keras_start = sides.model.get_weights()
        self.twin_start = sides.twin.get_weights()
        self.twin_values = [v.numpy() for _, _, _, v, _ in sides.twin_variables]
        self.fused = keras2_fused_layers(sides.model, len(x))
        self.mx_start = mxnet_values(sides.net)

    def _keras_restart(self):
        self.s.model.set_weights(self.keras_start)
        self.s.twin.set_weights(self.twin_start)

    def _record(self, what, layer, deviation, rounding, floor_rounding=0.0):
        ulp = np.finfo(np.float64 if what == "gradient" else np.float32).eps
        tolerance = max(0.0 if what in ROUNDING_ONLY else self.atol,
                        ROUNDING_FACTOR * max(rounding, floor_rounding, ulp))
        return StepRecord(what, layer, deviation, rounding, tolerance)

    def outputs(self):
        """Every layer's output in training mode (forward order)."""
        nhwc = np.ascontiguousarray(np.transpose(self.x, (0, 2, 3, 1)))
        self._keras_restart()
        theirs, exact = self.probe(nhwc), self.probe64(nhwc.astype(np.float64))
        self._keras_restart()
        ours = self.mxnet_outputs(self.mx_start, self.x)
        records = []
        for (_, name, mx_name), k, k64 in zip(self.pairs, theirs, exact):
            m = ours[mx_name]
            m = (np.transpose(m, (0, 2, 3, 1)) if m.ndim == 4 else m).reshape(k.shape)
            scale = max(1.0, float(np.abs(k).max()))
            records.append(self._record("output", name, float(np.abs(m - k).max()) / scale,
                                        float(np.abs(k - k64).max()) / scale))
        return records

    def _keras_run(self):
        """Keras' step in float32 and in float64: ``((loss, logits, grads, after), ...)``,
        variables keyed by their place in ``variables``."""
        self._keras_restart()
        results = []
        for model, variables, x in ((self.s.model, self.s.variables, self.x),
                                    (self.s.twin, self.s.twin_variables,
                                     self.x.astype(np.float64))):
            loss, logits, grads = keras_step(model, x, self.y, self.s.keras_loss)
            by_place = {i: grads.get(id(v)) for i, (_, _, _, v, _) in enumerate(variables)}
            after = {i: v.numpy() for i, (_, _, _, v, _) in enumerate(variables)}
            results.append((loss, logits, by_place, after))
        self._keras_restart()
        return results

    def _mxnet_step(self, dtype):
        """MXNet's step from the start: ``(loss, logits, gradients of the mean loss, values
        after)``."""
        net = self.s.net
        set_mxnet_values(net, self.mx_start)
        losses, outputs = forward_backward(
            net, self.s.mx_loss, mx.nd.array(self.x, dtype=dtype),
            mx.nd.array(self.y, dtype=dtype), [mx.cpu()], regularization=self.s.regularization)
        if net.keras2_variance:
            net.keras2_variance.apply()
        grads = {k: v / len(self.x) for k, v in mxnet_values(net, "grad").items()}
        return float(losses[0].mean().asscalar()), outputs[0].asnumpy(), grads, \
            mxnet_values(net)

    def step(self):
        """Loss, logits and BatchNorm moving statistics in float32; gradients in float64."""
        (loss, logits, grads, after), (loss64, logits64, grads64, after64) = self._keras_run()
        m_loss, m_logits, m_grads32, m_after = self._mxnet_step("float32")
        with in_float64(self.s.net):
            m_grads = self._mxnet_step("float64")[2]
        set_mxnet_values(self.s.net, self.mx_start)
        records = [self._record("loss", None, abs(m_loss - loss) / abs(loss),
                                abs(loss - loss64) / abs(loss64)),
                   self._record("logits", None, relative(m_logits, logits),
                                relative(logits, logits64))]
        gradients, statistics = [], []
        for i, (layer, canonical, role, _, trainable) in enumerate(self.s.variables):
            param, transform = self.s.rows[(canonical, role)]
            if role in ("moving_mean", "moving_variance"):
                ours = to_keras_layout(m_after[param], transform)
                exact = after64[i]
                if role == "moving_variance" and layer in self.fused:   # float64 is unfused
                    exact = bessel_corrected(exact, self.twin_values[i], *self.fused[layer])
                statistics.append((role, layer, relative(ours, after[i]),
                                   relative(after[i], exact)))
            elif trainable:
                ours = to_keras_layout(m_grads[param], transform)
                ours32 = to_keras_layout(m_grads32[param], transform)
                gradients.append(("gradient", layer, relative(ours, grads64[i]), EPSILON_RATIO *
                                  max(relative(grads[i], grads64[i]), relative(ours32, ours))))
        for group in (statistics, gradients):
            floor = FLOOR_SHARE * float(np.median([r[3] for r in group])) if group else 0.0
            records += [self._record(*r, floor_rounding=floor) for r in group]
        return records

    def optimizer_steps(self, compared):
        """The weights after ``OPTIMIZER_STEPS`` steps of ``compared`` (a
        ``training_recipe.ComparedOptimizer``) on both sides, fed the same gradients: Keras'
        float32 ones of each step; the rounding is Keras' own update of them in float64."""
        import tensorflow as tf
        library = keras_library(self.s.model)
        self._keras_restart()
        start = [v.numpy() for _, _, _, v, _ in self.s.variables]
        optimizer, optimizer64 = compared.keras(library), compared.keras(library)
        fed = []
        for _ in range(OPTIMIZER_STEPS):
            grads = keras_step(self.s.model, self.x, self.y, self.s.keras_loss, optimizer)[2]
            fed.append(grads)
            optimizer64.apply_gradients([
                (tf.constant(grads[id(v)].astype(np.float64)), v64)
                for (_, _, _, v, trainable), (_, _, _, v64, _) in zip(self.s.variables,
                                                                     self.s.twin_variables)
                if trainable and grads.get(id(v)) is not None])
        after = [v.numpy() for _, _, _, v, _ in self.s.variables]
        after64 = [v.numpy() for _, _, _, v, _ in self.s.twin_variables]
        ours = self._mxnet_steps(compared.config, [self._in_mxnet_layout(g) for g in fed])
        self._keras_restart()
        found = []
        for i, (layer, canonical, role, _, trainable) in enumerate(self.s.variables):
            if trainable:
                param, transform = self.s.rows[(canonical, role)]
                moved = after64[i] - start[i]
                found.append((compared.name, layer,
                              relative(to_keras_layout(ours[param], transform), after[i], moved),
                              relative(after[i], after64[i], moved)))
        return [self._record(*r) for r in found]

    def _in_mxnet_layout(self, grads):
        """``{MXNet parameter: gradient}`` of Keras' ``{variable id: gradient}``."""
        fed = {}
        for _, canonical, role, v, trainable in self.s.variables:
            if trainable and grads.get(id(v)) is not None:
                param, transform = self.s.rows[(canonical, role)]
                fed[param] = layouts.FORWARD[transform](grads[id(v)])
        return fed

    def _mxnet_steps(self, config, fed):
        """MXNet's weights after a step per entry of ``fed``, as xception-finetune steps
        (``train_step`` with the trainer ``config`` makes and its learning rate per step), each
        step's gradients replaced by ``fed``'s before the update."""
        net, n = self.s.net, len(self.x)
        set_mxnet_values(net, self.mx_start)
        trainable = {k: p for k, p in net.collect_params().items() if p.grad_req != "null"}
        trainer = make_trainer(trainable, run_optimizer(config), "device")
        for step, grads in enumerate(fed):
            trainer.set_learning_rate(learning_rate(
                step, 1, len(fed), config["lr"], 0.0, config["lr_schedule"],
                keras_schedule=config.get("keras_schedule")))

            def feed(grads=grads):
                for name, param in trainable.items():
                    if name in grads:
                        param.grad()[:] = mx.nd.array(grads[name] * n)
            train_step(net, trainer, self.s.mx_loss, mx.nd.array(self.x), mx.nd.array(self.y),
                       [mx.cpu()], after_backward=feed, regularization=self.s.regularization)
        values = mxnet_values(net)
        set_mxnet_values(net, self.mx_start)
        return values
