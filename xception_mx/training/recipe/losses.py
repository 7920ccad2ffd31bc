"""Keras' classification losses as Gluon losses on the logits the training network outputs,
one value per sample (Keras' ``sum_over_batch_size`` is their mean).

- ``SparseCategoricalCrossentropy`` and ``CategoricalCrossentropy`` on logits: a softmax head
  trained with ``from_logits=False`` is the same loss (Keras takes the softmax's logits, as
  ``keras/src/backend/tensorflow/nn.py`` does); ``label_smoothing`` (categorical only) trains
  toward ``y * (1 - s) + s / classes``.
- ``BinaryCrossentropy`` on the one logit of a binary head (a sigmoid head trained with
  ``from_logits=False`` is the same loss: Keras takes the sigmoid's logit), with
  ``label_smoothing`` toward ``y * (1 - s) + s / 2``.
- The default loss, ``SparseCategoricalCrossentropy(from_logits=True)``, is MXNet's
  ``SoftmaxCrossEntropyLoss``; of a binary head, ``BinaryCrossentropy(from_logits=True)``.
"""
import collections
import json

import mxnet as mx
import numpy as np
from mxnet import gluon
from sklearn.utils.class_weight import compute_class_weight

from xception_mx.errors import InputError, make_sure

Loss = collections.namedtuple("Loss", "class_name label_smoothing")
Loss.__doc__ = """A run's loss: Keras' class name and its label smoothing."""
DEFAULT_LOSS = Loss("SparseCategoricalCrossentropy", 0.0)
# Keras' string names and function names -> class names
LOSS_NAMES = {"categorical_crossentropy": "CategoricalCrossentropy",
              "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
              "binary_crossentropy": "BinaryCrossentropy"}
CATEGORICAL = ("CategoricalCrossentropy", "SparseCategoricalCrossentropy")
BINARY_LOSS = Loss("BinaryCrossentropy", 0.0)


class BinaryCrossentropy(gluon.loss.Loss):
    """``BinaryCrossentropy(from_logits=True, label_smoothing=s)`` of one logit per sample
    and labels 0 or 1, or of k logits and multi-hot labels (a multi-label head; Keras'
    mean over the k), smoothed toward ``y * (1 - s) + s / 2``, as
    ``tf.nn.sigmoid_cross_entropy_with_logits``: ``max(x, 0) - x * y + log(1 + exp(-|x|))``."""

    def __init__(self, label_smoothing=0.0, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        self.smoothing = label_smoothing

    def hybrid_forward(self, F, pred, label):
        # one logit and a 0/1 label per sample, or k logits and multi-hot labels
        target = F.reshape_like(label, pred) * (1.0 - self.smoothing) + 0.5 * self.smoothing
        loss = F.relu(pred) - pred * target + F.Activation(-F.abs(pred), act_type="softrelu")
        return F.mean(loss, axis=-1)


class SmoothedCrossentropy(gluon.loss.Loss):
    """``CategoricalCrossentropy(from_logits=True, label_smoothing=s)`` of integer labels."""

    def __init__(self, classes, label_smoothing, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        self.classes, self.smoothing = classes, label_smoothing

    def hybrid_forward(self, F, pred, label):
        # -sum(target * log p), target = one_hot * (1 - s) + s / classes, of any float type
        log_p = F.log_softmax(pred, axis=-1)
        return -(1.0 - self.smoothing) * F.pick(log_p, label, axis=-1) - \
            (self.smoothing / self.classes) * F.sum(log_p, axis=-1)


def loss_block(loss, classes):
    """The Gluon loss of ``loss`` (a ``Loss``) for ``classes`` classes."""
    if loss.class_name == "BinaryCrossentropy":
        return BinaryCrossentropy(loss.label_smoothing)
    if loss.label_smoothing:
        return SmoothedCrossentropy(classes, loss.label_smoothing)
    return gluon.loss.SoftmaxCrossEntropyLoss()


def describe(loss):
    return "%s(%s)" % (loss.class_name, "label_smoothing=%g" % loss.label_smoothing
                       if loss.label_smoothing else "")


class ClassWeighted:
    """A loss whose per-sample values are weighted by their class, as Keras'
    ``fit(class_weight=...)`` weights them (the batch's loss: the weighted sum over the batch
    size, as Keras' ``sum_over_batch_size``)."""

    def __init__(self, loss, weights):
        self.loss, self.weights = loss, [float(w) for w in weights]

    def __call__(self, pred, label):
        weights = mx.nd.array(self.weights, ctx=label.context)
        return self.loss(pred, label) * mx.nd.take(weights, label.astype("int32"))


def class_weights(choice, labels, classes, where="--class-weight"):
    """Per class (model class order), the weights ``--class-weight`` asks for:
    ``balanced`` (``n / (classes * count)``, scikit-learn's), or a JSON file
    ``{"class name": weight}`` naming every class in ``classes`` (the model's names)."""
    if choice == "balanced":
        counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))
        empty = [c for c, n in zip(classes, counts) if n == 0]
        make_sure(not empty, "%s balanced: class %s has no training image", where,
                  ", ".join(empty[:3]))
        return list(compute_class_weight("balanced", classes=np.arange(len(classes)),
                                         y=np.asarray(labels, np.int64)))
    try:
        with open(choice) as f:
            given = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError("%s %s: expected balanced or a JSON file of {\"class name\": weight} "
                         "(%s)" % (where, choice, exc))
    make_sure(isinstance(given, dict) and all(isinstance(v, (int, float)) and v >= 0
                                              for v in given.values()),
              "%s %s: expected a JSON object of class names to weights >= 0", where, choice)
    unknown = sorted(set(given) - set(classes))
    missing = [c for c in classes if c not in given]
    make_sure(not unknown and not missing, "%s %s: names %s; the classes are %s (missing: %s)",
              where, choice, ", ".join(unknown[:3]) or "no unknown class",
              ", ".join(classes[:6]), ", ".join(missing[:3]) or "none")
    return [float(given[c]) for c in classes]
