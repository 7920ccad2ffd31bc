"""Keras' Xception as an MXNet Gluon network with Keras' exact semantics."""
from xception_mx._threads import configure_threads
from xception_mx.cpu import request_amx

configure_threads()
request_amx()     # before oneDNN's first AMX instruction, which is fatal without it

from xception_mx.model.preprocess import load_images, preprocess_input  # noqa: E402
from xception_mx.model.xception import Xception, min_input_size, tf_same_pool_padding  # noqa: E402

__all__ = ["Xception", "min_input_size", "tf_same_pool_padding", "load_images",
           "preprocess_input", "configure_threads"]
__version__ = "0.1.0"
