"""Prove a conversion: an MXNet checkpoint compared with the Keras model it came from, on
the same inputs (``parity.py``; the verdict: ``verdict.py``; per layer: ``layers.py``), and one
training step against Keras' (``training_parity.py``, ``training_step.py``,
``training_report.py``).  The Keras side is ``xception_mx.keras_side``'s; the command,
``xception-parity``, ``xception_mx.commands.parity``."""
