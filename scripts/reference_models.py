"""Seeded Keras Xceptions with random weights and non-trivial BatchNorm statistics, gamma
and beta (so that a conversion that swaps or drops any tensor is caught): what the demo, the
tests and the benchmarks convert, since nothing downloads weights here.  Built and saved by
Keras itself (``xception_mx.keras_side``)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import xception_mx  # noqa: E402,F401  (threads; MXNet before TensorFlow)
from xception_mx.keras_side.loading import import_keras, keras_xception  # noqa: E402


def randomize_batchnorm(model, seed, calibration_batch=4, low=-1.0, high=1.0, size=None):
    """Give every BatchNorm non-trivial gamma, beta and moving statistics.

    With mean 0, variance 1, gamma 1 and beta 0 a swapped or dropped BN tensor
    changes nothing; here each of the four differs per channel.  Gamma and
    beta are drawn at random, then the moving statistics are set to the batch
    statistics of a seeded random batch drawn in ``[low, high]`` (the range the
    model's input takes; one training-mode pass with momentum 0), which keeps
    activations at a sane scale through all 36 layers.  ``size``: the batch's
    height and width, for a model built for any input size.
    """
    rng = np.random.RandomState(seed)
    bns = [layer for layer in model.layers      # Keras 3 or tf-keras layers
           if type(layer).__name__ == "BatchNormalization"]
    for layer in bns:
        channels = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
        layer.beta.assign(rng.uniform(-0.5, 0.5, channels).astype(np.float32))
    momenta = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    height, width = size or model.input_shape[1:3]
    channels = model.input_shape[3] or 3
    batch = rng.uniform(low, high, (calibration_batch, height, width, channels)).astype(
        np.float32)
    model(batch, training=True)
    for layer, momentum in zip(bns, momenta):
        layer.momentum = momentum
    return model


def randomize_head(model, seed):
    """Random gamma/beta/moving statistics for the BatchNorm layers outside the
    base, and random Dense kernels (scaled by fan-in) and biases: a head whose
    every tensor matters."""
    rng = np.random.RandomState(seed + 100)
    for layer in model.layers:
        if layer.name.startswith(("block", "batch_normalization")):
            continue                                  # a flattened base's own layers
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.uniform(-0.5, 0.5, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
        elif type(layer).__name__ == "Dense":
            fan_in, units = layer.kernel.shape
            layer.kernel.assign(rng.normal(0, 3 / np.sqrt(fan_in), (fan_in, units))
                                .astype(np.float32))
            if layer.use_bias:
                layer.bias.assign(rng.normal(0, 0.2, units).astype(np.float32))
    return model


def reference_model(seed=0, include_top=True, classes=1000, pooling=None,
                    classifier_activation=None, input_shape=(299, 299)):
    """A seeded Keras Xception with random weights and non-trivial BatchNorms."""
    keras = import_keras()
    keras.utils.clear_session()     # auto-names (conv2d_N) as in a fresh process
    keras.utils.set_random_seed(seed)
    model = keras_xception(include_top, classes, pooling, classifier_activation, input_shape)
    return randomize_batchnorm(model, seed)


def reference_transfer_model(seed=0, classes=10, input_shape=(299, 299), units=256):
    """The keras.io transfer-learning guide's model, seeded: ``preprocess_input``
    on the raw input, an Xception base called with ``training=False``, then
    pooling, ``Dense`` + ``BatchNormalization``, ``Dropout`` and a softmax
    ``predictions`` layer; every BatchNorm with non-trivial statistics."""
    keras = import_keras()
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    base = randomize_batchnorm(keras_xception(False, input_shape=input_shape), seed)
    inputs = keras.Input(tuple(input_shape) + (3,))
    x = keras.applications.xception.preprocess_input(inputs)
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(units, activation="relu", name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return randomize_head(keras.Model(inputs, outputs), seed)


def same_weights(model, include_top=True, classes=1000, pooling=None,
                 classifier_activation=None, input_shape=(299, 299)):
    """A Keras Xception of another input shape/head carrying ``model``'s weights."""
    other = keras_xception(include_top, classes, pooling, classifier_activation, input_shape)
    weights = model.get_weights()
    if not include_top and len(weights) > len(other.get_weights()):
        weights = weights[:len(other.get_weights())]
    other.set_weights(weights)
    return other
