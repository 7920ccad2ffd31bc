"""xception-mx: Keras' Xception as an exact MXNet network, its conversion, proof and training.

The library API (``xception_mx.api``): ``load`` a checkpoint and ``predict`` / ``logits``
on the fast path, ``convert`` a Keras file, check ``parity`` with Keras.  Also the Gluon
network ``Xception`` and the input convention (``load_images``, ``preprocess_input``).
Modules that moved keep their old names for one release (``_moved``).
"""
import sys

# MXNet 1.9.1 imported after TensorFlow kills the interpreter (a bare "Segmentation fault",
# every time): their bundled libraries clash.  Said here, before anything imports MXNet.
if "tensorflow" in sys.modules and "mxnet" not in sys.modules:
    raise ImportError("xception_mx must be imported before tensorflow and keras (MXNet 1.9.1 "
                      "imported after TensorFlow crashes the interpreter): put `import "
                      "xception_mx` (or `import mxnet`) first, then restart the interpreter")

from xception_mx._threads import configure_engine, configure_threads  # noqa: E402
from xception_mx.cpu import request_amx  # noqa: E402

configure_threads()
request_amx()     # before oneDNN's first AMX instruction, which is fatal without it
configure_engine()

from xception_mx import _moved  # noqa: E402
from xception_mx.api import convert, load, parity  # noqa: E402
from xception_mx.errors import InputError  # noqa: E402
from xception_mx.images.decode import image_files, load_images, preprocess_input  # noqa
from xception_mx.model.xception import Xception, min_input_size, tf_same_pool_padding  # noqa
from xception_mx.serving.runtime import Model  # noqa: E402

_moved.install()

__all__ = ["load", "Model", "convert", "parity", "InputError", "Xception", "min_input_size",
           "tf_same_pool_padding", "load_images", "image_files", "preprocess_input",
           "configure_threads"]
__version__ = "0.2.0"
