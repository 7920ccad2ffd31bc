"""The transforms of ``xception_mx.images``: Keras' resize as TF computes it."""
import numpy as np

from xception_mx.images.transforms import keras_resize
from xception_mx.keras_side import import_keras


def test_keras_transform_is_tf_image_resize():
    import tensorflow as tf
    import_keras()
    pixels = np.random.RandomState(0).randint(0, 256, (37, 53, 3)).astype(np.uint8)
    for size in ((71, 71), (20, 90)):
        theirs = tf.image.resize(pixels, size).numpy()
        assert np.abs(keras_resize(pixels, size) - theirs).max() < 1e-3
