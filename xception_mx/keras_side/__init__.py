"""The Keras side: Keras models built, loaded and run by Keras itself, which Keras wrote a
file (``loading``), their layers paired with the MXNet network's outputs (``pairing``), a
user's model rebuilt as it was converted (``rebuild``), outputs for NCHW batches
(``running``).  Conversion, validation and evaluation import it; it imports none of them
(only ``xception_mx.model``, for the network's names, and the shared errors and progress).
"""
from .loading import (FORMATS, SUFFIX, import_keras, keras_xception, load_keras_model,  # noqa
                      load_keras_reference, load_own_model, load_user_model, save_keras,
                      written_by_keras2)
from .pairing import (canonical_names, layer_pairs, probe_model, own_model_probe,  # noqa
                      set_keras_batchnorm, set_keras_regularizers, xception_probe)
from .rebuild import as_converted, replace_policies  # noqa
from .running import keras_predict  # noqa
