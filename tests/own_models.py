"""Users' transfer-learning models, built and saved by Keras itself (Keras 3,
and Keras 2 through tf-keras), seeded, with non-trivial BatchNorms in base and
head: the styles of issue #12 (nested, flattened, Sequential)."""
from xception_mx.keras_side import import_keras
from reference_models import randomize_batchnorm, randomize_head
# saving them, building each once, rewriting their files: own_model_files.py (kept here as
# own_models.save, own_models.built, own_models.strip_layer_names)
from own_model_files import built, save, strip_layer_names  # noqa: F401


def import_tf_keras():
    import_keras()                     # MXNet first, TensorFlow quiet
    import tf_keras
    return tf_keras


def _base(keras, seed, size, pooling=None):
    keras.utils.set_random_seed(seed)
    base = keras.applications.Xception(weights=None, include_top=False, pooling=pooling,
                                       input_shape=tuple(size) + (3,))
    return randomize_batchnorm(base, seed)


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
    return randomize_head(keras.Model(inputs, outputs), seed)


def guide_binary(seed=0, size=(71, 71), keras=None, l2=0.05):
    """The keras.io transfer-learning guide's model as it fine-tunes: preprocess_input, the
    base (trainable, called with training=False), pooling, Dropout, a ``Dense(1)`` logit,
    compiled as the guide compiles it (``Adam``, ``BinaryCrossentropy(from_logits=True)``);
    with ``l2``, ``L2(l2)`` on the logit's kernel and on base layer block14_sepconv1's
    pointwise kernel."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size)
    if l2:
        config = base.get_config()
        for layer in config["layers"]:
            if layer["config"]["name"] == "block14_sepconv1":
                layer["config"]["pointwise_regularizer"] = keras.regularizers.serialize(
                    keras.regularizers.L2(l2))
        rebuilt = type(base).from_config(config)
        rebuilt.set_weights(base.get_weights())
        base = rebuilt
    inputs = keras.Input(tuple(size) + (3,))
    x = base(keras.applications.xception.preprocess_input(inputs), training=False)
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    outputs = layers.Dense(1, name="out", kernel_regularizer=keras.regularizers.L2(l2)
                           if l2 else None)(x)
    model = randomize_head(keras.Model(inputs, outputs), seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


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
    randomize_batchnorm(base, seed, low=0.0, high=255.0)     # raw pixels enter Normalization
    y = layers.Flatten()(base.output)
    y = layers.Dense(8, activation="gelu", name="fc1")(y)
    y = layers.GaussianNoise(0.1)(y)
    y = layers.Dense(3, activation="softmax", name="predictions_user")(y)
    return randomize_head(keras.Model(inputs, y), seed)


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
    return randomize_head(model, seed)


def any_size(seed=0):
    """A base built for any input size (``input_shape=(None, None, 3)``), as
    fully convolutional models are: nested, a pooling head."""
    keras = import_keras()
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    base = keras.applications.Xception(weights=None, include_top=False,
                                       input_shape=(None, None, 3))
    randomize_batchnorm(base, seed, size=(71, 71))
    inputs = keras.Input((None, None, 3))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    outputs = layers.Dense(4, name="out")(layers.Dense(16, activation="relu", name="fc1")(x))
    return randomize_head(keras.Model(inputs, outputs), seed)


def resizing(seed=0, size=(40, 56), keras=None):
    """Small photos upsampled inside the model (a base at 71x71 fed 40x56
    images): ``Resizing``, ``Rescaling``, a ``Flatten`` head."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, (71, 71))
    inputs = keras.Input(tuple(size) + (3,))
    x = layers.Resizing(71, 71, name="upsample")(inputs)
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = layers.Flatten()(base(x, training=False))
    x = layers.Dense(8, activation="relu", name="fc1")(x)
    outputs = layers.Dense(5, activation="softmax", name="out")(x)
    return randomize_head(keras.Model(inputs, outputs), seed)


def _keras2_sized(seed, size, sizing, base_size, pooling, classes):
    """Keras 2: ``sizing`` (a layer class) to ``base_size``, ``preprocess_input``
    on the symbolic input, the base, ``pooling``, fc1 and a softmax."""
    tf_keras = import_tf_keras()
    layers = tf_keras.layers
    base = _base(tf_keras, seed, base_size)
    inputs = tf_keras.Input(tuple(size) + (3,))
    x = getattr(layers, sizing)(*base_size)(inputs)
    x = tf_keras.applications.xception.preprocess_input(x)
    x = getattr(layers, pooling)()(base(x, training=False))
    x = layers.Dense(16, activation="relu", name="fc1")(x)
    outputs = layers.Dense(classes, activation="softmax", name="out")(x)
    return randomize_head(tf_keras.Model(inputs, outputs), seed)


def keras2_resizing(seed=0, size=(100, 130)):
    """Keras 2: larger photos downsampled inside (bilinear, no antialiasing)."""
    return _keras2_sized(seed, size, "Resizing", (71, 71), "GlobalAveragePooling2D", 4)


def any_size_resizing(seed=0):
    """A model that takes any size and resizes it to 80x90 itself, fed Keras'
    preprocessed input (no rescaling inside)."""
    keras = import_keras()
    layers = keras.layers
    base = _base(keras, seed, (80, 90))
    inputs = keras.Input((None, None, 3))
    x = layers.Resizing(80, 90, name="to_base_size")(inputs)
    x = layers.GlobalAveragePooling2D()(base(x, training=False))
    outputs = layers.Dense(4, name="out")(layers.Dense(16, activation="relu", name="fc1")(x))
    return randomize_head(keras.Model(inputs, outputs), seed)


def evaluation_crop(seed=0):
    """ImageNet's evaluation transform inside a model that takes any size:
    augmentation, then a ``Sequential`` of ``Resizing`` to 90x100,
    ``CenterCrop`` to 75x80 and ``Rescaling``."""
    keras = import_keras()
    layers = keras.layers
    base = _base(keras, seed, (75, 80))
    inputs = keras.Input((None, None, 3))
    x = keras.Sequential([layers.RandomFlip("horizontal")], name="augmentation")(inputs)
    x = keras.Sequential([layers.Resizing(90, 100, name="resize_larger"),
                          layers.CenterCrop(75, 80, name="crop"),
                          layers.Rescaling(1 / 127.5, offset=-1)], name="preprocessing")(x)
    x = layers.GlobalAveragePooling2D()(base(x, training=False))
    x = layers.Dense(8, activation="relu", name="fc1")(x)
    outputs = layers.Dense(5, activation="softmax", name="out")(x)
    return randomize_head(keras.Model(inputs, outputs), seed)


def keras2_center_crop(seed=0, size=(96, 120)):
    """Keras 2: a 96x120 input center-cropped to 71x80 (odd margins)."""
    return _keras2_sized(seed, size, "CenterCrop", (71, 80), "GlobalMaxPooling2D", 5)


def integer_input(seed=0, size=(71, 71), keras=None):
    """``Input(dtype="uint8")`` then ``Rescaling``, as models that take the
    image bytes are built: Keras casts what it is fed (fractions truncated)."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size)
    inputs = keras.Input(tuple(size) + (3,), dtype="uint8")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="to_unit_range")(inputs)
    x = layers.GlobalAveragePooling2D()(base(x, training=False))
    x = layers.Dense(8, activation="relu", name="fc1")(x)
    outputs = layers.Dense(5, activation="softmax", name="out")(x)
    return randomize_head(keras.Model(inputs, outputs), seed)


def keras2_integer_input(seed=0, size=(71, 71)):
    """The same in Keras 2 (tf-keras), saved as tf-keras' ``.keras`` archive."""
    return integer_input(seed, size, keras=import_tf_keras())


def mixed_precision(seed=0, size=(71, 71)):
    """The keras.io guide's model trained in mixed precision (``mixed_float16``
    policy; the float32 output layer the Keras guide asks for): weights float32,
    computation float16."""
    keras = import_keras()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        base = _base(keras, seed, size)
        inputs = keras.Input(tuple(size) + (3,))
        x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
        x = keras.layers.Dense(8, activation="relu", name="fc1")(x)
        outputs = keras.layers.Dense(4, activation="softmax", dtype="float32", name="out")(x)
        return randomize_head(keras.Model(inputs, outputs), seed)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def pooled_then_flattened(seed=0, size=(71, 71), keras=None):
    """``GlobalAveragePooling2D()`` then ``Flatten()`` (a rank-2 Flatten, the identity in
    Keras), as public fine-tuning code often writes the head."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size)
    inputs = keras.Input(tuple(size) + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    x = layers.Dense(16, activation="relu", name="fc1")(layers.Flatten()(x))
    outputs = layers.Dense(4, activation="softmax", name="out")(x)
    return randomize_head(keras.Model(inputs, outputs), seed)


def keras2_pooled_then_flattened(seed=0, size=(71, 71)):
    return pooled_then_flattened(seed, size, import_tf_keras())


def custom_layer(seed=0, size=(71, 71), keras=None):
    """A head holding a one-weight ``Layer`` subclass (its ``call`` is Python code)."""
    keras = keras or import_keras()
    layers = keras.layers

    class ScaledLayer(layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(1,), initializer="ones", name="scale")

        def call(self, x):
            return x * self.scale
    base = _base(keras, seed, size, pooling="avg")
    inputs = keras.Input(tuple(size) + (3,))
    x = ScaledLayer(name="scaled_layer")(base(inputs, training=False))
    outputs = layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def keras2_custom_layer(seed=0, size=(71, 71)):
    return custom_layer(seed, size, import_tf_keras())


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
    return randomize_head(tf_keras.Model(inputs, outputs), seed)


def keras2_flattened(seed=0, size=(71, 71)):
    """``Model(base.input, ...)`` in Keras 2, expecting preprocessed input."""
    tf_keras = import_tf_keras()
    layers = tf_keras.layers
    base = _base(tf_keras, seed, size)
    x = layers.GlobalAveragePooling2D()(base.output)
    x = layers.Dense(8, activation="elu", name="fc1")(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(4, activation="sigmoid", name="out")(x)
    return randomize_head(tf_keras.Model(base.input, x), seed)


def _pooled_bn_head(layers, features, units, classes):
    """Global average pooling, ``Dense(units, relu)`` 'fc1', BatchNorm 'fc1_bn', a softmax
    ``Dense`` 'out'."""
    x = layers.GlobalAveragePooling2D()(features)
    x = layers.Dense(units, activation="relu", name="fc1")(x)
    x = layers.BatchNormalization(name="fc1_bn")(x)
    return layers.Dense(classes, activation="softmax", name="out")(x)


def grayscale_plain(seed=0, size=(71, 71), keras=None, channels=1):
    """``Xception(weights=None, input_shape=(H, W, 1))``: a whole Xception reading one
    channel, as X-ray classifiers train it."""
    keras = keras or import_keras()
    keras.utils.set_random_seed(seed)
    model = keras.applications.Xception(weights=None, input_shape=tuple(size) + (channels,),
                                        classes=5)
    return randomize_batchnorm(model, seed)


def keras2_grayscale_plain(seed=0, size=(71, 71)):
    return grayscale_plain(seed, size, import_tf_keras())


def grayscale_transfer(seed=0, size=(80, 90), keras=None):
    """``Xception(include_top=False, weights=None, input_tensor=Input((H, W, 1)))`` after a
    ``Rescaling``, pooled, a Dense head: audio-spectrogram models are built so."""
    keras = keras or import_keras()
    layers = keras.layers
    inputs = keras.Input(tuple(size) + (1,))
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    keras.utils.set_random_seed(seed)
    base = keras.applications.Xception(weights=None, include_top=False, input_tensor=x)
    randomize_batchnorm(base, seed, low=0.0, high=255.0)
    return randomize_head(keras.Model(inputs, _pooled_bn_head(layers, base.output, 16, 4)),
                          seed)


def keras2_grayscale_transfer(seed=0, size=(80, 90)):
    return grayscale_transfer(seed, size, import_tf_keras())


def multi_output(seed=0, size=(71, 71), keras=None, flattened=False):
    """A multi-task head: one trunk (Dense, BatchNorm, Dropout twice) forking into
    ``Dense(14, sigmoid)``, ``Dense(1, sigmoid)`` and ``Dense(1)`` (a regression); the base
    nested with ``pooling='avg'``, or ``flattened`` with ``GlobalAveragePooling2D``."""
    keras = keras or import_keras()
    layers = keras.layers
    if flattened:
        base = _base(keras, seed, size)
        inputs = base.input
        x = layers.GlobalAveragePooling2D(name="pool")(base.output)
    else:
        base = _base(keras, seed, size, pooling="avg")
        inputs = keras.Input(tuple(size) + (3,))
        x = base(inputs, training=False)
    for units in (64, 32):
        x = layers.Dense(units, activation="relu", name="fc%d" % units)(x)
        x = layers.BatchNormalization(name="fc%d_bn" % units)(x)
        x = layers.Dropout(0.3)(x)
    outputs = [layers.Dense(14, activation="sigmoid", name="diseases")(x),
               layers.Dense(1, activation="sigmoid", name="gender")(x),
               layers.Dense(1, name="age")(x)]
    return randomize_head(keras.Model(inputs, outputs), seed)


def keras2_multi_output(seed=0, size=(71, 71)):
    return multi_output(seed, size, import_tf_keras(), flattened=True)


def flattened_multi_output(seed=0, size=(71, 71)):
    return multi_output(seed, size, flattened=True)


def frozen_below_block13(seed=0, size=(71, 71), keras=None):
    """Chollet's fine-tuning recipe: the base frozen up to block 12 (``layer.trainable =
    False``), block 13 on and the head trainable."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size)
    unfrozen = False
    for layer in base.layers:
        unfrozen = unfrozen or layer.name.startswith("block13")
        layer.trainable = unfrozen
    inputs = keras.Input(tuple(size) + (3,))
    return randomize_head(keras.Model(inputs, _pooled_bn_head(layers, base(inputs), 8, 3)),
                          seed)


def keras2_frozen_below_block13(seed=0, size=(71, 71)):
    return frozen_below_block13(seed, size, import_tf_keras())


def keras2_flattened_bn_head(seed=0, size=(71, 71)):
    """``Model(base.input, head(base.output))`` in Keras 2 with a BatchNorm in the head (its
    base trains on batch statistics: the Bessel-corrected variance of Keras 2's fused
    BatchNorm is in play)."""
    tf_keras = import_tf_keras()
    base = _base(tf_keras, seed, size)
    return randomize_head(tf_keras.Model(base.input, _pooled_bn_head(
        tf_keras.layers, base.output, 8, 4)), seed)


def training_layers(seed=0, size=(71, 71), keras=None):
    """Every layer that acts only in training, as public code writes them: augmentation in a
    Sequential before ``preprocess_input``, ``GaussianNoise`` on the images, then
    ``SpatialDropout2D`` on the base's feature map, ``Dropout(0.5)`` 'drop',
    ``GaussianDropout`` and ``AlphaDropout`` in the head."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size)
    inputs = keras.Input(tuple(size) + (3,))
    x = keras.Sequential([layers.RandomFlip("horizontal_and_vertical", name="flip"),
                          layers.RandomRotation(0.1, fill_mode="constant", fill_value=9.0,
                                                name="rotation"),
                          layers.RandomZoom(0.2, interpolation="nearest", name="zoom"),
                          layers.RandomTranslation(0.1, (-0.2, 0.1), fill_mode="wrap",
                                                   name="shift"),
                          layers.RandomContrast(0.2, name="contrast"),
                          layers.RandomBrightness(0.1, name="brightness")],
                         name="augmentation")(inputs)
    x = layers.GaussianNoise(0.5, name="pixel_noise")(x)
    x = keras.applications.xception.preprocess_input(x)
    x = layers.SpatialDropout2D(0.1, name="channel_drop")(base(x))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5, name="drop")(x)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    x = layers.GaussianDropout(0.1, name="gauss_drop")(x)
    x = layers.AlphaDropout(0.1, name="alpha_drop")(x)
    outputs = layers.Dense(3, activation="softmax", name="out")(x)
    return randomize_head(keras.Model(inputs, outputs), seed)


def linear_activations(seed=0, size=(71, 71), keras=None):
    """``Dense(relu)`` then two linear ``Activation`` layers: a chain of identities after a
    ``FullyConnected`` that oneDNN fuses with its ReLU."""
    keras = keras or import_keras()
    layers = keras.layers
    base = _base(keras, seed, size)
    inputs = keras.Input(tuple(size) + (3,))
    x = layers.GlobalAveragePooling2D()(base(inputs))
    x = layers.Dense(16, activation="relu", name="fc1")(x)
    x = layers.Activation("linear", name="linear1")(x)
    x = layers.Activation("linear", name="linear2")(x)
    return randomize_head(keras.Model(inputs, layers.Dense(4, name="out")(x)), seed)
