"""Keras models built and loaded by Keras itself: ``keras.applications.Xception``, the files
it writes in each format users hold, a user's whole model, and which Keras wrote a file.

TensorFlow must be imported after MXNet (the other order crashes the process
with these wheels), so Keras is only ever imported through ``import_keras``.
"""
import json
import os
import zipfile

import mxnet  # noqa: F401  (must precede TensorFlow, see above)

from xception_mx.errors import InputError

FORMATS = ("legacy-h5", "legacy-model-h5", "weights-h5", "keras")
SUFFIX = {"legacy-h5": ".h5", "legacy-model-h5": ".h5", "weights-h5": ".weights.h5",
          "keras": ".keras"}


# What a converter-only install (``pip install xception-mx``, no extra) lacks for Keras' side.
NO_KERAS = ("Keras' side needs Keras 3 and TensorFlow, which this installation lacks (%s): "
            "install the validate extra, pip install -c constraints.txt 'xception-mx[validate]' "
            "(from a clone: pip install -c constraints.txt -e '.[validate]')")


def import_keras():
    """Import Keras 3 on TensorFlow, quietly, after MXNet; one line naming the extra to
    install where they are missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise InputError(NO_KERAS % exc) from None
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


def load_own_model(keras_path):
    """The Keras model, or one line saying why Keras cannot load it."""
    try:
        return load_user_model(keras_path)
    except InputError:                  # no Keras at all (import_keras): said as it is
        raise
    except ImportError as exc:          # Keras 3 is there (import_keras): tf-keras is not
        raise InputError("%s: written by Keras 2; loading it needs tf-keras (pip install "
                         "--no-deps tf-keras==2.17.0): %s" % (keras_path, exc)) from None
    except Exception as exc:            # Keras raises many types on a file it cannot read
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "Unknown layer" in text and keras_path.endswith(".h5"):
            hint = " (Keras 3 writes preprocess_input into .h5 files as layers it cannot read " \
                   "back; save the model as .keras)"
        raise InputError("%s: Keras itself cannot load this model: %s%s"
                         % (keras_path, text, hint))


def load_keras_reference(keras_path, prefix, include_top, classes, pooling, input_size,
                         channels=3, keras=None, batchnorm=None):
    """The Keras model, loaded by Keras' own loader (``keras``: which Keras, default 3), with
    logits output, its BatchNorm layers as ``batchnorm`` (the checkpoint meta's) sets them."""
    if not os.path.isfile(keras_path):
        raise InputError("%s: %s" % (keras_path, "a folder; expected a Keras file (.h5, "
                                     ".weights.h5 or .keras)" if os.path.isdir(keras_path)
                                     else "no such Keras weights file"))
    try:
        model = load_keras_model(keras_path, include_top, classes or 1000, pooling, None,
                                 input_size, channels, keras)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise InputError("%s: Keras cannot load it into Xception(include_top=%s, classes=%s) as "
                         "the checkpoint %s is: %s" % (keras_path, include_top, classes, prefix,
                                                       str(exc).strip().splitlines()[0][:300]))
    from .pairing import set_keras_batchnorm
    return set_keras_batchnorm(model, batchnorm)
