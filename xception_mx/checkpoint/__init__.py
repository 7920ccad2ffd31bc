"""The MXNet checkpoint: ``PREFIX-symbol.json``, ``PREFIX-NNNN.params``, ``PREFIX-meta.json``
and ``PREFIX-labels.txt``, written (``files.py``: all or nothing, verified), read and checked
(``reading.py``), described (``meta.py``: ``Meta`` and ``build_meta``) and named
(``labels.py``).  It depends on no command's package, which all read checkpoints through it.

The names below are those ``xception_mx.checkpoint`` (the module of 0.1) offered.
"""
from xception_mx.checkpoint.files import (check_writable, checkpoint_paths, journal_path,  # noqa
                                          params_dict, recover_checkpoint, verify_params_file,
                                          write_checkpoint)
from xception_mx.checkpoint.meta import Meta, build_meta  # noqa: F401
from xception_mx.checkpoint.reading import load_params, load_symbol, read_meta  # noqa: F401
