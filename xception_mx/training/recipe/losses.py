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

from mxnet import gluon

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
    and labels 0 or 1 (smoothed toward ``y * (1 - s) + s / 2``), as
    ``tf.nn.sigmoid_cross_entropy_with_logits``: ``max(x, 0) - x * y + log(1 + exp(-|x|))``."""

    def __init__(self, label_smoothing=0.0, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        self.smoothing = label_smoothing

    def hybrid_forward(self, F, pred, label):
        target = F.reshape(label, (-1, 1)) * (1.0 - self.smoothing) + 0.5 * self.smoothing
        loss = F.relu(pred) - pred * target + F.Activation(-F.abs(pred), act_type="softrelu")
        return F.mean(loss, axis=-1)


class SmoothedCrossentropy(gluon.loss.Loss):
    """``CategoricalCrossentropy(from_logits=True, label_smoothing=s)`` of integer labels."""

    def __init__(self, classes, label_smoothing, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        self.classes, self.smoothing = classes, label_smoothing

    def hybrid_forward(self, F, pred, label):
        target = F.one_hot(label, self.classes) * (1.0 - self.smoothing) + \
            self.smoothing / self.classes
        return -F.sum(target * F.log_softmax(pred, axis=-1), axis=-1)


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
