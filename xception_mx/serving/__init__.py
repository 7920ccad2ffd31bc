"""Running checkpoints: a checkpoint's network and batches through it (``loading.py``), fast
oneDNN networks (``fast.py``), a checkpoint ready to run (``runtime.py``), ``xception-predict``
(``predict.py``) and ``xception-quantize`` (``quantize.py``).  Reading and writing them is
``xception_mx.checkpoint``'s."""
