"""Fine-tuning: a run step by step (``finetune.py``), the data-parallel step (``train.py``),
the optimizer resolved once (``optimizers.py``; Keras' update formulas:
``keras_optimizers.py``), run folders (``run_dir.py``), a run's checks and data
(``run_setup.py``), own models (``own_model_training.py``), the channel-padded network
(``padded_training.py``), frozen layers (``frozen.py``), Keras 2's moving variance
(``keras2_statistics.py``), the export (``export.py``), devices and jobs (``devices.py``),
RecordIO packing (``pack.py``) and the parameter-server launcher (``launch.py``,
``remote.py``).  The commands are ``xception_mx.commands``'."""
