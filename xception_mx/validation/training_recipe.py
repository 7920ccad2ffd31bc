"""The recipe both sides of ``xception-parity --training`` train with: the Keras file's
compiled loss, its regularizers and its optimizer (with its schedule and clipping), resolved
as ``xception-finetune`` resolves them with no flag.  A file compiled without an optimizer is
compared with three of Keras' (``COMPARED_OPTIMIZERS``: SGD with Nesterov momentum, Adam,
AdamW, at the learning rates of Keras' examples); without a loss, with the toolkit's default
(sparse softmax cross-entropy on the logits; binary cross-entropy of a one-unit head).

The Keras side's loss is Keras' formula on the logits (``keras_loss``) plus the model's own
regularization losses (``model.losses``, which Keras adds in ``fit``); its optimizer is the
file's, rebuilt from the recorded configuration by Keras (``deserialize``: the classes
``file_recipe`` accepts, no code from the file)."""
import collections
import copy

import numpy as np

from xception_mx.errors import InputError
from xception_mx.training.recipe.losses import describe as describe_loss
from xception_mx.training.recipe.optimizers import SETTING_OF_KERAS, resolve_optimizer
from xception_mx.training.recipe.resolve import OVERRIDING_FLAGS, run_loss
from xception_mx.training.run_setup import resolve_file_recipe

# ours -> (Keras class, arguments; the learning rates of Keras' examples)
COMPARED_OPTIMIZERS = {
    "keras-sgd": ("SGD", {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True}),
    "keras-adam": ("Adam", {"learning_rate": 0.001}),
    "keras-adamw": ("AdamW", {"learning_rate": 0.001, "weight_decay": 0.004}),
}

ComparedOptimizer = collections.namedtuple("ComparedOptimizer", "name keras config")
ComparedOptimizer.__doc__ = """An optimizer both sides step with: its ``name`` in the report,
``keras(library)`` a new Keras optimizer of it, and ``config`` the run configuration
xception-finetune trains it with (``optimizer``, ``lr``, its settings, ``lr_schedule``,
``keras_schedule``)."""


def compared_recipe(meta, where):
    """``(loss, [ComparedOptimizer], line)`` of a checkpoint's meta: the file's recipe as
    xception-finetune resolves it with no flag (``line`` says it), or the defaults."""
    config = {key: None for _, key in OVERRIDING_FLAGS}
    config.update(recipe="file", warmup_epochs=0.0)
    line = resolve_file_recipe(config, meta, where)
    loss = run_loss(config)
    entry = (meta.recipe or {}).get("optimizer")
    if entry:
        name = (entry if isinstance(entry, str) else entry.get("class_name")).split(">")[-1]
        return loss, [ComparedOptimizer(name, _from_file(entry), config)], line
    line = "no optimizer in the Keras file: Keras' %s, each as %s; loss %s" % (
        ", ".join("%s(%s)" % (cls, ", ".join("%s=%s" % kv for kv in arguments.items()))
                  for cls, arguments in COMPARED_OPTIMIZERS.values()),
        "/".join(COMPARED_OPTIMIZERS), describe_loss(loss))
    return loss, [ComparedOptimizer(name, _keras_example(cls, arguments),
                                    _example_config(name, arguments))
                  for name, (cls, arguments) in COMPARED_OPTIMIZERS.items()], line


def _from_file(entry):
    def build(library):
        try:
            return library.optimizers.deserialize(copy.deepcopy(entry))
        except (TypeError, ValueError) as exc:
            raise InputError("the Keras file's optimizer %s: this Keras cannot rebuild it to "
                             "compare (%s)" % (entry.get("class_name"), exc))
    return build


def _keras_example(cls, arguments):
    return lambda library: getattr(library.optimizers, cls)(**arguments)


def _example_config(name, arguments):
    arguments = dict(arguments)
    lr = arguments.pop("learning_rate")
    settings = resolve_optimizer(name, lr, {SETTING_OF_KERAS[k]: v
                                            for k, v in arguments.items()}).settings
    return dict(settings, optimizer=name, lr=lr, lr_schedule="constant", keras_schedule=None)


def keras_loss(loss, classes):
    """Keras' ``loss`` (a ``recipe.losses.Loss``) of integer ``labels`` and the model's
    logits, averaged over the batch as Keras' ``sum_over_batch_size``:
    ``f(labels, logits) -> tensor``.  Label smoothing as Keras smooths: toward
    ``y (1 - s) + s / classes`` (binary: ``s / 2``)."""
    import tensorflow as tf
    s = loss.label_smoothing

    def binary(labels, logits):
        target = labels.reshape(-1, 1) * (1.0 - s) + 0.5 * s
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            tf.constant(target, logits.dtype), logits))

    def categorical(labels, logits):
        target = np.eye(classes)[labels.astype(np.int64)] * (1.0 - s) + s / classes
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
            tf.constant(target, logits.dtype), logits))
    return binary if loss.class_name == "BinaryCrossentropy" else categorical
