"""Fine-tuning: the data-parallel step (``train.py``), ``xception-finetune``
(``finetune.py``), run folders (``run_dir.py``), a run's checks and data
(``run_setup.py``), ``xception-pack`` (``pack.py``), a synthetic dataset
(``synthetic.py``), own models (``own_model_training.py``), the channel-padded
network (``padded_training.py``) and ``xception-launch`` (``launch.py``)."""
