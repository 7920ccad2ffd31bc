"""The networks: Keras' Xception (``xception.py``), a user's base + head model
(``transfer.py``), channel counts padded for oneDNN (``padding.py``), and image
preprocessing with the input convention (``preprocess.py``)."""
