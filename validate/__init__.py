"""Prove a conversion: compare MXNet checkpoints with Keras (``xception-parity``)."""
from xception_mx import configure_threads

configure_threads()
