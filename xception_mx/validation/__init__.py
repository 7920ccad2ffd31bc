"""Prove a conversion: compare MXNet checkpoints with Keras (``xception-parity``)."""
