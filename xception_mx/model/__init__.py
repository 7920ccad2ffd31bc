"""The networks: Keras' Xception (``xception.py``), a user's base + head model
(``own_model.py``, its head's layers in ``head_layers.py``; ``own_model_inputs.py``: what
comes before the base) and channel counts padded for oneDNN (``padding.py``); image
decoding and the input convention are ``xception_mx.images``'."""
