"""The Keras side of every comparison: seeded reference Xceptions, saved in
each format users hold, and their outputs.

TensorFlow must be imported after MXNet (the other order crashes the process
with these wheels), so Keras is only ever imported through ``import_keras``.
"""
import json
import os
import zipfile

import numpy as np

import mxnet  # noqa: F401  (must precede TensorFlow, see above)

from xception_mx.progress import progress as progress_bar

FORMATS = ("legacy-h5", "legacy-model-h5", "weights-h5", "keras")
SUFFIX = {"legacy-h5": ".h5", "legacy-model-h5": ".h5", "weights-h5": ".weights.h5",
          "keras": ".keras"}


def import_keras():
    """Import Keras 3 on TensorFlow, quietly, after MXNet."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")      # no retracing notes from per-layer probes
    return keras


def keras_xception(include_top=True, classes=1000, pooling=None, classifier_activation=None,
                   input_shape=(299, 299), channels=3, keras=None):
    """``keras.applications.Xception(weights=None, ...)`` for ``(H, W, channels)`` input
    (``keras``: the Keras module, Keras 3 by default; tf-keras for Keras 2's)."""
    keras = keras or import_keras()
    return keras.applications.Xception(
        weights=None, include_top=include_top, classes=classes, pooling=pooling,
        classifier_activation=classifier_activation,
        input_shape=tuple(input_shape) + (channels,))


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


def save_keras(model, path, fmt):
    """Save ``model`` as Keras writes each format.

    ``legacy-h5``: weights in the legacy HDF5 layout (what ``save_weights``
    wrote up to Keras 2, and what the downloadable Xception files are);
    ``legacy-model-h5``: ``model.save("x.h5")``; ``weights-h5``:
    ``model.save_weights("x.weights.h5")``; ``keras``: ``model.save("x.keras")``.
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    if fmt == "legacy-h5":
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    elif fmt == "legacy-model-h5":
        legacy_h5_format.save_model_to_hdf5(model, path, include_optimizer=False)
    elif fmt == "weights-h5":
        model.save_weights(path)
    elif fmt == "keras":
        model.save(path)
    else:
        raise ValueError("unknown Keras format %r; expected one of %s" % (fmt, FORMATS))
    return path


def load_keras_model(path, include_top, classes, pooling=None, classifier_activation=None,
                     input_shape=(299, 299), channels=3, keras=None):
    """A Keras Xception of the given head and input shape with the weights of
    ``path`` (any format ``save_keras`` writes, or tf-keras' ``.keras``),
    loaded by Keras itself (``keras``: which, see ``keras_xception``)."""
    model = keras_xception(include_top, classes, pooling, classifier_activation, input_shape,
                           channels, keras)
    if path.endswith(".keras"):        # Keras 3's or tf-keras' archive, loaded in safe mode
        model.set_weights(load_user_model(path).get_weights())
    else:
        model.load_weights(path)
    return model


def keras_predict(model, x_nchw, batch_size=8, progress=False):
    """Keras outputs for NCHW input, returned as numpy (NCHW for feature maps; a list for a
    model with several outputs); one
    ``model.predict`` per batch, so that ``progress`` can show them."""
    outputs = []
    with progress_bar(total=len(x_nchw), desc="keras", enabled=progress,
                      step=batch_size) as bar:
        for start in range(0, len(x_nchw), batch_size):
            batch = np.transpose(x_nchw[start:start + batch_size], (0, 2, 3, 1))
            out = model.predict(np.ascontiguousarray(batch), batch_size=batch_size, verbose=0)
            outputs.append(out if isinstance(out, (list, tuple)) else [out])
            bar.update(len(batch))
    ys = [np.concatenate(parts) for parts in zip(*outputs)]
    ys = [np.transpose(y, (0, 3, 1, 2)) if y.ndim == 4 else y for y in ys]
    return ys if len(ys) > 1 else ys[0]


def written_by_keras2(path):
    """Whether Keras 2 wrote ``path`` (``keras_version`` 2.x): the HDF5 file's
    attribute, or the ``metadata.json`` of a ``.keras`` archive (tf-keras
    writes that format too, and Keras 3 cannot load its archives)."""
    import h5py
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            try:
                version = json.loads(archive.read("metadata.json")).get("keras_version", "")
            except (KeyError, ValueError, AttributeError):
                return False
    else:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", b"")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return version.startswith("2.")


def load_user_model(path):
    """A user's whole model, loaded by the Keras that wrote it: Keras 3 with
    ``safe_mode`` (no code from the file runs), or for a Keras 2 file (which
    Keras 3 cannot read when it holds ``TFOpLambda`` layers) Keras 2 itself
    through tf-keras.  Check the architecture with ``convert`` before calling
    this: Keras 2's HDF5 loader would run a ``Lambda`` layer's code."""
    keras = import_keras()
    if written_by_keras2(path):
        import tf_keras
        if zipfile.is_zipfile(path):
            return tf_keras.models.load_model(path, compile=False, safe_mode=True)
        return tf_keras.models.load_model(path, compile=False)
    return keras.models.load_model(path, compile=False, safe_mode=True)
