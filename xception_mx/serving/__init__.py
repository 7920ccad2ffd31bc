"""Running checkpoints: how one runs on this CPU, decided once (``plan.py``: precision,
channel padding, oneDNN's instruction sets), a checkpoint's network and batches through it
(``loading.py``), fast oneDNN networks and ready-to-serve copies (``fast.py``; BatchNorm
folded for bf16: ``folding.py``), a checkpoint ready to run behind ``xception_mx.load``
(``runtime.py``), what ``xception-predict`` prints (``predict.py``).  Reading and writing
checkpoints is ``xception_mx.checkpoint``'s; the commands are ``xception_mx.commands``'."""
