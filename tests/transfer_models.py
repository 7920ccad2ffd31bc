"""Users' transfer-learning models, built and saved by Keras itself (Keras 3,
and Keras 2 through tf-keras), seeded, with non-trivial BatchNorms in base and
head: the styles of issue #12 (nested, flattened, Sequential)."""
import numpy as np

from validate.keras_side import import_keras


def import_tf_keras():
    import_keras()                     # MXNet first, TensorFlow quiet
    import tf_keras
    return tf_keras


def _randomize_head(model, seed):
    """Random gamma/beta/moving statistics for BatchNorms outside the base."""
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


def _base(keras, seed, size, pooling=None):
    keras.utils.set_random_seed(seed)
    base = keras.applications.Xception(weights=None, include_top=False, pooling=pooling,
                                       input_shape=tuple(size) + (3,))
    return _calibrate(base, seed)


def _calibrate(model, seed, low=-1.0, high=1.0):
    """``keras_side.randomize_batchnorm`` for Keras 3 and tf-keras models, with
    the calibration batch drawn from the range the model's input takes."""
    rng = np.random.RandomState(seed)
    bns = [l for l in model.layers if type(l).__name__ == "BatchNormalization"]
    for layer in bns:
        n = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
        layer.beta.assign(rng.uniform(-0.5, 0.5, n).astype(np.float32))
        layer.momentum = 0.0
    height, width = model.input_shape[1:3]
    model(rng.uniform(low, high, (4, height, width, 3)).astype(np.float32), training=True)
    for layer in bns:
        layer.momentum = 0.99
    return model


def nested(seed=0, size=(71, 71), keras=None):
    """The keras.io guide: augmentation, preprocess_input on the symbolic input,
    the base called with training=False, a head with Dropout, Dense+BN."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size)
    inputs = keras.Input(tuple(size) + (3,))
    x = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)],
                         name="augmentation")(inputs)
    x = keras.applications.xception.preprocess_input(x)
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    outputs = layers.Dense(6, activation="softmax", name="out")(x)
    return _randomize_head(keras.Model(inputs, outputs), seed)


def flattened(seed=0, size=(150, 200), keras=None):
    """``Model(base.input, head(base.output))`` with Normalization in front,
    Flatten, a gelu Dense and a softmax Dense."""
    keras = keras or import_keras()
    layers = keras.layers
    inputs = keras.Input(tuple(size) + (3,))
    x = layers.Normalization(mean=[120.0, 115.0, 100.0], variance=[3600.0, 3300.0, 3900.0])(
        inputs)
    keras.utils.set_random_seed(seed)
    base = keras.applications.Xception(weights=None, include_top=False, input_tensor=x)
    _calibrate(base, seed, 0.0, 255.0)             # raw pixels enter Normalization
    y = layers.Flatten()(base.output)
    y = layers.Dense(8, activation="gelu", name="fc1")(y)
    y = layers.GaussianNoise(0.1)(y)
    y = layers.Dense(3, activation="softmax", name="predictions_user")(y)
    return _randomize_head(keras.Model(inputs, y), seed)


def sequential(seed=0, size=(71, 71), keras=None):
    """``Sequential([Rescaling, Xception(pooling='max'), Dense, LeakyReLU, ...])``."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size, pooling="max")
    model = keras.Sequential([keras.Input(tuple(size) + (3,)),
                              layers.Rescaling(1 / 127.5, offset=-1), base,
                              layers.Dense(16, activation="swish", name="fc1"),
                              layers.LeakyReLU(name="leaky"),
                              layers.BatchNormalization(name="fc1_bn"),
                              layers.Dense(5, name="logits"),
                              layers.Activation("softmax", name="probabilities")])
    return _randomize_head(model, seed)


def keras2_nested(seed=0, size=(71, 71)):
    """The guide's model as Keras 2 writes it (preprocess_input as TFOpLambda)."""
    tf_keras = import_tf_keras()
    layers = tf_keras.layers
    base = _base(tf_keras, seed, size)
    inputs = tf_keras.Input(tuple(size) + (3,))
    x = tf_keras.applications.xception.preprocess_input(inputs)
    x = base(x, training=False)
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(16, activation="tanh", name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    outputs = layers.Dense(5, activation="softmax", name="out")(x)
    return _randomize_head(tf_keras.Model(inputs, outputs), seed)


def keras2_flattened(seed=0, size=(71, 71)):
    """``Model(base.input, ...)`` in Keras 2, expecting preprocessed input."""
    tf_keras = import_tf_keras()
    layers = tf_keras.layers
    base = _base(tf_keras, seed, size)
    x = layers.GlobalAveragePooling2D()(base.output)
    x = layers.Dense(8, activation="elu", name="fc1")(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(4, activation="sigmoid", name="out")(x)
    return _randomize_head(tf_keras.Model(base.input, x), seed)


def save(model, path):
    """Keras' own save: ``.keras`` archive or legacy full-model ``.h5``."""
    if path.endswith(".keras"):
        model.save(path)
    elif type(model).__module__.startswith("tf_keras"):
        model.save(path, save_format="h5")
    else:
        from keras.src.legacy.saving import legacy_h5_format
        legacy_h5_format.save_model_to_hdf5(model, path, include_optimizer=False)
    return path
