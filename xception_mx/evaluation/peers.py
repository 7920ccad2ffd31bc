"""What an evaluation compares the checkpoint with, on the same decoded inputs: the Keras model
it was converted from (``--keras``, run by Keras itself, ``safe_mode``), or the checkpoint at
another precision (``--compare``)."""
import numpy as np

from xception_mx import keras_side
from xception_mx.conversion.own_model.same_model import read_file_own_model
from xception_mx.errors import make_sure
from xception_mx.serving.runtime import Model


def keras_scorer(keras_path, prefix, meta, input_size, classes, batch_size):
    """``outputs(x_nchw)``: the Keras model's raw outputs (logits or probabilities, as the
    checkpoint's) for inputs in the checkpoint's convention."""
    if meta.is_own_model:
        read_file_own_model(keras_path, meta.own_model_spec, prefix)
        model, _ = keras_side.as_converted(keras_side.load_own_model(keras_path), input_size)
    else:
        model = keras_side.load_keras_reference(keras_path, prefix, True, classes, None,
                                                input_size, meta.channels,
                                                batchnorm=meta.batchnorm)
    return lambda x: np.asarray(keras_side.keras_predict(model, x, batch_size), np.float64)


def precision_scorer(prefix, precision, batch_size, epoch=0):
    """``(outputs(x_nchw), kind)`` of the checkpoint at ``precision``."""
    model = Model(prefix, precision, epoch, batch_size)
    return (lambda x: np.asarray(model.logits(x), np.float64)), model.kind


def agreement(ours, theirs, labels, names, paths):
    """How two sets of probabilities agree: ``(fraction with the same top-1, [the images
    where it differs])``."""
    mine, other = ours.argmax(axis=1), theirs.argmax(axis=1)
    differ = np.flatnonzero(mine != other)
    return float(1.0 - len(differ) / max(len(labels), 1)), [
        {"path": paths[i], "true": names[labels[i]], "predicted": names[mine[i]],
         "other": names[other[i]], "probability": float(ours[i, mine[i]]),
         "other_probability": float(theirs[i, other[i]])} for i in differ]


def check_compare(precision, model):
    """``--compare precision`` is another precision this checkpoint runs at."""
    make_sure(not model.meta.is_serving_copy, "--compare %s: %s is an optimized %s copy "
              "(xception-quantize), which runs only as it is; evaluate its source %s with "
              "--precision %s --compare %s", precision, model.prefix, model.precision,
              model.meta.source_checkpoint("checkpoint"), model.precision, precision)
    make_sure(precision != model.precision, "--compare %s: the checkpoint already runs at %s; "
              "compare with another precision", precision, precision)
