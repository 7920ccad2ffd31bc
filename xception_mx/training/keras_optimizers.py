"""Keras' optimizers in MXNet, with Keras' update formulas, defaults and weight decay.

A fine-tuning recipe written for Keras (``SGD(momentum=0.9, nesterov=True)``, ``Adam()``,
``AdamW(weight_decay=0.004)``) gives the same updates here with ``--optimizer keras-sgd``,
``keras-adam``, ``keras-adamw``.  How MXNet's own optimizers compare (measured by
``tests/training/test_keras_optimizers.py``; ``docs/finetune.md``, "Training as in Keras"):

- without weight decay, MXNet's ``sgd`` is Keras' ``SGD(momentum)`` and its ``nag`` Keras'
  ``SGD(momentum, nesterov=True)`` (MXNet 1.9.1's NAG keeps the learning rate inside the
  velocity, as Keras does, so they agree across a learning-rate change too); its ``adam`` is
  Keras' ``Adam`` but for epsilon (MXNet's 1e-8, Keras' 1e-7);
- weight decay differs: MXNet's ``wd`` is coupled (L2: ``wd * w`` added to the gradient, so
  that it goes through momentum and Adam's moments); Keras' ``weight_decay`` is decoupled:
  ``w -= lr * weight_decay * w`` before the step, on every trainable variable;
- MXNet 1.9.1 has no AdamW.

Each update is written in the order of operations Keras uses (``keras/src/optimizers/sgd.py``,
``adam.py``, ``base_optimizer.py``; tf-keras 2.17's are the same), in float32.
"""
import mxnet as mx
from mxnet import nd

KERAS_DEFAULTS = {      # Keras 3's (and tf-keras') constructor defaults
    "keras-sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False,
                  "weight_decay": None},
    "keras-adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                   "weight_decay": None},
    "keras-adamw": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                    "weight_decay": 0.004},
}
KERAS_OPTIMIZERS = tuple(KERAS_DEFAULTS)


class _KerasOptimizer(mx.optimizer.Optimizer):
    """The parts every Keras optimizer shares: the gradient as MXNet hands it (rescaled,
    clipped), Keras' decoupled weight decay, and MXNet's own ``wd`` kept at 0."""

    def __init__(self, weight_decay=None, **kwargs):
        if kwargs.get("wd"):
            raise ValueError("Keras' optimizers decay weights by weight_decay (decoupled), "
                             "not by MXNet's wd")
        super().__init__(**kwargs)
        self.weight_decay = weight_decay

    def _gradient(self, grad):
        grad = grad * self.rescale_grad
        if self.clip_gradient is not None:
            grad = nd.clip(grad, -self.clip_gradient, self.clip_gradient)
        return grad

    def _decay(self, weight, lr):
        if self.weight_decay:
            weight[:] = weight - weight * self.weight_decay * lr


@mx.optimizer.Optimizer.register
class KerasSGD(_KerasOptimizer):
    """``keras.optimizers.SGD(learning_rate, momentum, nesterov, weight_decay)``:
    ``m = momentum * m - lr * g``; ``w += m``, or with Nesterov ``w += momentum * m - lr * g``."""

    def __init__(self, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.nesterov = momentum, nesterov

    def create_state(self, index, weight):
        return nd.zeros(weight.shape, weight.context, dtype=weight.dtype) \
            if self.momentum else None

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr = self._get_lr(index)
        grad = self._gradient(grad)
        self._decay(weight, lr)
        if state is None:
            weight[:] = weight - grad * lr
            return
        state[:] = state * self.momentum - grad * lr
        if self.nesterov:
            weight[:] = weight + (state * self.momentum - grad * lr)
        else:
            weight[:] = weight + state


@mx.optimizer.Optimizer.register
class KerasAdam(_KerasOptimizer):
    """``keras.optimizers.Adam(learning_rate, beta_1, beta_2, epsilon, weight_decay)``:
    ``m += (g - m) * (1 - beta_1)``, ``v += (g^2 - v) * (1 - beta_2)``,
    ``w -= m * lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) / (sqrt(v) + epsilon)``."""

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(**kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def create_state(self, index, weight):
        return (nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr = self._get_lr(index)
        step = self._index_update_count[index]
        grad = self._gradient(grad)
        self._decay(weight, lr)
        m, v = state
        alpha = lr * (1.0 - self.beta_2 ** step) ** 0.5 / (1.0 - self.beta_1 ** step)
        m[:] = m + (grad - m) * (1.0 - self.beta_1)
        v[:] = v + (nd.square(grad) - v) * (1.0 - self.beta_2)
        weight[:] = weight - (m * alpha) / (nd.sqrt(v) + self.epsilon)


@mx.optimizer.Optimizer.register
class KerasAdamW(KerasAdam):
    """``keras.optimizers.AdamW``: Adam with decoupled ``weight_decay`` (default 0.004)."""

    def __init__(self, weight_decay=0.004, **kwargs):
        super().__init__(weight_decay=weight_decay, **kwargs)


REGISTERED = {"keras-sgd": "kerassgd", "keras-adam": "kerasadam", "keras-adamw": "kerasadamw"}
