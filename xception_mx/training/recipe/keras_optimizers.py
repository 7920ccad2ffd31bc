"""Keras' optimizers in MXNet, with Keras' update formulas, defaults and weight decay.

A fine-tuning recipe written for Keras (``SGD(momentum=0.9, nesterov=True)``, ``Adam()``,
``AdamW(weight_decay=0.004)``, ``RMSprop()``, ``Nadam()``) gives the same updates here with
``--optimizer keras-sgd``, ``keras-adam``, ``keras-adamw``, ``keras-rmsprop``, ``keras-nadam``,
each with Keras' ``clipnorm``, ``global_clipnorm`` and ``clipvalue``.  How MXNet's own
optimizers compare (measured by ``tests/training/test_keras_optimizers.py``;
``docs/finetune.md``, "Training as in Keras"):

- without weight decay, MXNet's ``sgd`` is Keras' ``SGD(momentum)`` and its ``nag`` Keras'
  ``SGD(momentum, nesterov=True)`` (MXNet 1.9.1's NAG keeps the learning rate inside the
  velocity, as Keras does, so they agree across a learning-rate change too); its ``adam`` is
  Keras' ``Adam`` but for epsilon (MXNet's 1e-8, Keras' 1e-7);
- weight decay differs: MXNet's ``wd`` is coupled (L2: ``wd * w`` added to the gradient, so
  that it goes through momentum and Adam's moments); Keras' ``weight_decay`` is decoupled:
  ``w -= lr * weight_decay * w`` before the step, on every trainable variable;
- MXNet 1.9.1 has no AdamW.

Each update is written in the order of operations Keras uses (``keras/src/optimizers/sgd.py``,
``adam.py``, ``rmsprop.py``, ``nadam.py``, ``base_optimizer.py``; tf-keras 2.17's are the same),
in float32: the gradient clipped (``clipnorm`` per variable, ``global_clipnorm`` over all of
them, or ``clipvalue`` per element), then the weights decayed, then the step.
"""
import mxnet as mx
import numpy as np
from mxnet import nd

CLIPPING = {"clipnorm": None, "global_clipnorm": None, "clipvalue": None}
ADAM_DEFAULTS = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                 "weight_decay": None}
KERAS_DEFAULTS = {      # Keras 3's (and tf-keras') constructor defaults
    "keras-sgd": dict(CLIPPING, learning_rate=0.01, momentum=0.0, nesterov=False,
                      weight_decay=None),
    "keras-adam": dict(CLIPPING, **ADAM_DEFAULTS),
    "keras-adamw": dict(CLIPPING, **dict(ADAM_DEFAULTS, weight_decay=0.004)),
    "keras-rmsprop": dict(CLIPPING, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                          centered=False, weight_decay=None),
    "keras-nadam": dict(CLIPPING, **dict(ADAM_DEFAULTS, learning_rate=0.001)),
}
KERAS_OPTIMIZERS = tuple(KERAS_DEFAULTS)
F32 = np.float32


def held(value):
    """A hyperparameter as Keras computes with it: Keras casts the Python float to a float32
    tensor, then to the weights' type (a float64 model's update uses 0.9f, not 0.9)."""
    return None if value is None else float(F32(value))


class _KerasOptimizer(mx.optimizer.Optimizer):
    """The parts every Keras optimizer shares: the gradient as MXNet hands it (rescaled,
    clipped as Keras clips), Keras' decoupled weight decay, and MXNet's own ``wd`` kept at 0.
    ``global_scale``: this step's factor of ``global_clipnorm`` (``clip_global_norm`` sets
    it before each update)."""

    def __init__(self, weight_decay=None, clipnorm=None, global_clipnorm=None, clipvalue=None,
                 **kwargs):
        if kwargs.get("wd"):
            raise ValueError("Keras' optimizers decay weights by weight_decay (decoupled), "
                             "not by MXNet's wd")
        super().__init__(**kwargs)
        self.weight_decay = held(weight_decay)
        self.clipnorm, self.global_clipnorm, self.clipvalue = clipnorm, global_clipnorm, clipvalue
        self.global_scale = None

    def _gradient(self, grad):
        grad = grad * self.rescale_grad
        if self.clip_gradient is not None:
            grad = nd.clip(grad, -self.clip_gradient, self.clip_gradient)
        if self.clipnorm:                       # Keras' _clip_by_norm
            # summed in float64: MXNet's float32 norm of a 2048x2048 kernel strays by 1e-4
            # (TF's reduction, by about 1e-7), which moves Adam's step as much
            norm = float(F32(nd.norm(grad.astype("float64")).asscalar()))
            grad = grad * self.clipnorm / max(norm, self.clipnorm)
        elif self.global_clipnorm:
            if self.global_scale is None:
                raise RuntimeError("global_clipnorm: call clip_global_norm before the update")
            grad = grad * self.global_scale
        elif self.clipvalue:
            grad = nd.clip(grad, -self.clipvalue, self.clipvalue)
        return grad

    def _decay(self, weight, lr):
        if self.weight_decay:
            weight[:] = weight - weight * self.weight_decay * lr

    def _begin(self, index, weight, grad):
        """What every update starts with, in Keras' order: the step counted, the gradient
        clipped, the weight decayed.  ``(lr, step number from 1, gradient)``."""
        self._update_count(index)
        lr = self._get_lr(index)
        grad = self._gradient(grad)
        self._decay(weight, lr)
        return lr, self._index_update_count[index], grad

    def _zeros(self, weight, count=1):
        states = tuple(nd.zeros(weight.shape, weight.context, dtype=weight.dtype)
                       for _ in range(count))
        return states if count > 1 else states[0]


def clip_global_norm(trainer, batch_size):
    """Set the ``global_scale`` of ``trainer``'s Keras optimizer with ``global_clipnorm``:
    ``clipnorm / max(norm, clipnorm)``, ``norm`` the L2 norm of all the gradients the step
    applies (as ``trainer.update(batch_size)`` rescales them), as Keras'
    ``clip_by_global_norm``.  Call it between ``allreduce_grads`` and ``update``."""
    optimizer = trainer._optimizer
    clip = getattr(optimizer, "global_clipnorm", None)
    if not clip:
        return
    scale = trainer._scale / batch_size
    total = F32(0)
    for param in trainer._params:
        if param.grad_req != "null":
            grad = param.list_grad()[0].astype("float64")           # as clipnorm's
            total += F32(nd.sum(nd.square(grad * scale)).asscalar())
    norm = np.sqrt(total)
    optimizer.global_scale = float(F32(clip) * min(F32(1) / norm, F32(1) / F32(clip)))


def step(trainer, batch_size):
    """``trainer.step(batch_size)``, with Keras' ``global_clipnorm`` where the optimizer has
    it (the norm needs every gradient, reduced over the devices, before any update)."""
    if not getattr(trainer._optimizer, "global_clipnorm", None):
        trainer.step(batch_size)
        return
    trainer.allreduce_grads()
    clip_global_norm(trainer, batch_size)
    trainer.update(batch_size)


@mx.optimizer.Optimizer.register
class KerasSGD(_KerasOptimizer):
    """``keras.optimizers.SGD(learning_rate, momentum, nesterov, weight_decay)``:
    ``m = momentum * m - lr * g``; ``w += m``, or with Nesterov ``w += momentum * m - lr * g``."""

    def __init__(self, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.nesterov = held(momentum), nesterov

    def create_state(self, index, weight):
        return self._zeros(weight) if self.momentum else None

    def update(self, index, weight, grad, state):
        lr, _, grad = self._begin(index, weight, grad)
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
        self.beta_1, self.beta_2, self.epsilon = held(beta_1), held(beta_2), held(epsilon)

    def create_state(self, index, weight):
        return self._zeros(weight, 2)

    def update(self, index, weight, grad, state):
        lr, step, grad = self._begin(index, weight, grad)
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


@mx.optimizer.Optimizer.register
class KerasRMSprop(_KerasOptimizer):
    """``keras.optimizers.RMSprop(learning_rate, rho, momentum, epsilon, centered)``:
    ``v = rho * v + (1 - rho) * g^2`` (centered: ``a = rho * a + (1 - rho) * g``, and
    ``v - a^2`` in the denominator), ``step = lr * g / sqrt(v + epsilon)``; with momentum
    ``m = momentum * m + step``, ``w -= m``, else ``w -= step``."""

    def __init__(self, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(**kwargs)
        self.rho, self.momentum, self.epsilon = held(rho), held(momentum), held(epsilon)
        self.centered = centered

    def create_state(self, index, weight):
        return {"velocity": self._zeros(weight),
                "momentum": self._zeros(weight) if self.momentum > 0 else None,
                "average": self._zeros(weight) if self.centered else None}

    def update(self, index, weight, grad, state):
        lr, _, grad = self._begin(index, weight, grad)
        velocity, rho = state["velocity"], self.rho
        velocity[:] = velocity * rho + nd.square(grad) * (1 - rho)
        if self.centered:
            average = state["average"]
            average[:] = average * rho + grad * (1 - rho)
            denominator = velocity - nd.square(average) + self.epsilon
        else:
            denominator = velocity + self.epsilon
        increment = (grad * lr) / nd.sqrt(denominator)
        if state["momentum"] is None:
            weight[:] = weight - increment
            return
        state["momentum"][:] = state["momentum"] * self.momentum + increment
        weight[:] = weight - state["momentum"]


@mx.optimizer.Optimizer.register
class KerasNadam(_KerasOptimizer):
    """``keras.optimizers.Nadam(learning_rate, beta_1, beta_2, epsilon)``: Adam with Nesterov
    momentum and Keras' momentum schedule ``u_t = beta_1 (1 - 0.5 * 0.96^t)``, whose running
    product Keras keeps in float32 (kept here per parameter, the same sequence)."""

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(**kwargs)
        self.beta_1, self.beta_2, self.epsilon = held(beta_1), held(beta_2), held(epsilon)
        self.u_product = {}

    def create_state(self, index, weight):
        return self._zeros(weight, 2)

    def _schedule(self, key, t):
        """``(u_t, u_{t+1}, product of u_1..u_t, times u_{t+1})`` in float32; ``key``: the
        parameter and its device, as MXNet counts each device's updates apart."""
        beta_1, decay = F32(self.beta_1), F32(0.96)
        u_t = beta_1 * (F32(1) - F32(0.5) * decay ** F32(t))
        u_next = beta_1 * (F32(1) - F32(0.5) * decay ** F32(t + 1))
        product = self.u_product.get(key, F32(1)) * beta_1 * (
            F32(1) - F32(0.5) * decay ** F32(t))
        self.u_product[key] = product
        return u_t, u_next, product, product * u_next

    def update(self, index, weight, grad, state):
        lr, t, grad = self._begin(index, weight, grad)
        u_t, u_next, product, product_next = self._schedule((index, str(weight.context)), t)
        m, v = state
        m[:] = m + (grad - m) * (1.0 - self.beta_1)
        v[:] = v + (nd.square(grad) - v) * (1.0 - self.beta_2)
        m_hat = (m * float(u_next)) / float(F32(1) - product_next) + \
            (grad * float(F32(1) - u_t)) / float(F32(1) - product)
        v_hat = v / float(F32(1) - F32(self.beta_2) ** F32(t))
        weight[:] = weight - (m_hat * lr) / (nd.sqrt(v_hat) + self.epsilon)


REGISTERED = {"keras-sgd": "kerassgd", "keras-adam": "kerasadam", "keras-adamw": "kerasadamw",
              "keras-rmsprop": "kerasrmsprop", "keras-nadam": "kerasnadam"}
