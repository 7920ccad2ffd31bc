"""Checkpoints and running them: writing (``checkpoint.py``) and reading
(``loading.py``) checkpoints, fast oneDNN networks (``fast.py``), ``xception-predict``
(``predict.py``), ``xception-quantize`` (``quantize.py``) and class names
(``labels.py``)."""
