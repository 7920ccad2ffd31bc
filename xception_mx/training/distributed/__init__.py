"""Where a fine-tuning runs: ``--gpus``/``--cpus`` to MXNet contexts and the job a process
belongs to (``devices.py``), whether the installed MXNet has code for the GPUs
(``gpu_code.py``), and the parameter-server launcher (``launch.py``) with its hosts and ssh
(``remote.py``)."""
