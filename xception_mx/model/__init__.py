"""The networks: Keras' Xception (``xception.py``), a user's base + head model
(``transfer.py``, its head's layers in ``head_layers.py``; ``transfer_inputs.py``: what
comes before the base) and channel counts padded for oneDNN (``padding.py``); image
decoding and the input convention are ``xception_mx.images``'."""
