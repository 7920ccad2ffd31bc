"""Write MXNet checkpoints safely and prove they hold what was meant.

A checkpoint is ``PREFIX-symbol.json``, ``PREFIX-%04d.params`` (keys
``arg:<name>`` / ``aux:<name>``, as ``mx.model.save_checkpoint`` and Gluon's
``export`` write them) and ``PREFIX-meta.json``.

Writing is all or nothing, even if the process is killed at any moment:
1. every file is written under a temporary name in the target folder, the
   parameters reloaded and compared exactly with what was meant;
2. a commit journal ``.PREFIX.commit.json`` listing the renames is written
   atomically: this is the commit point;
3. the temporary files are renamed into place and the journal removed.
Killed before 2, the previous checkpoint is untouched (and the temporary files
are cleaned up by the next write); killed after 2, ``recover_checkpoint``
(called by every writer and reader) completes the renames.  The meta records
the sha256 of the params and symbol files besides.
"""
import json
import os
import tempfile

import mxnet as mx
import numpy as np

from xception_mx.atomic import atomic_path, directory_lock, file_mode, sha256_file
from xception_mx.errors import InputError, make_sure
from xception_mx.faults import fault_point
from xception_mx.outputs import nearest_existing


def checkpoint_paths(prefix, epoch=0):
    """``{"symbol": ..., "params": ..., "meta": ...}`` for ``prefix`` and ``epoch``."""
    return {"symbol": "%s-symbol.json" % prefix, "params": "%s-%04d.params" % (prefix, epoch),
            "meta": "%s-meta.json" % prefix}


def check_writable(prefix, epoch=0, force=False):
    """Fail before any work if the outputs exist (without ``force``) or the
    directory cannot take new files."""
    paths = checkpoint_paths(prefix, epoch)
    for path in paths.values():
        make_sure(force or not os.path.exists(path),
                  "%s: already exists; pass --force to overwrite it", path)
        make_sure(not os.path.isdir(path), "%s: is a directory", path)
    directory = os.path.dirname(os.path.abspath(prefix))
    existing = nearest_existing(directory)
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".xception-mx-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError("%s: cannot write to the output directory (%s)"
                              % (directory, exc.strerror or exc))
    return paths


def params_dict(arg_params, aux_params):
    """The ``{"arg:name" | "aux:name": NDArray}`` dict MXNet checkpoints hold."""
    saved = {"arg:" + k: mx.nd.array(v, dtype=v.dtype) for k, v in arg_params.items()}
    saved.update({"aux:" + k: mx.nd.array(v, dtype=v.dtype) for k, v in aux_params.items()})
    return saved


def verify_params_file(path, arg_params, aux_params):
    """Reload a ``.params`` file and compare every tensor exactly."""
    loaded = mx.nd.load(path)
    expected = {"arg:" + k: v for k, v in arg_params.items()}
    expected.update({"aux:" + k: v for k, v in aux_params.items()})
    missing = sorted(set(expected) - set(loaded))
    extra = sorted(set(loaded) - set(expected))
    make_sure(not missing and not extra, "%s: reloaded parameters differ in names (missing %s, "
              "unexpected %s)", path, missing[:3], extra[:3])
    for key, value in expected.items():
        got = loaded[key].asnumpy()
        make_sure(got.shape == value.shape and got.dtype == value.dtype
                  and np.array_equal(got, value, equal_nan=True),
                  "%s: reloaded %s differs from what was written", path, key)


def _temp_path(path):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    return tmp


def journal_path(prefix):
    directory, name = os.path.split(os.path.abspath(prefix))
    return os.path.join(directory, ".%s.commit.json" % name)


def _apply_journal(journal, writer=False):
    for i, (tmp, final) in enumerate(journal["renames"]):
        if os.path.exists(tmp):
            os.replace(tmp, final)
        if writer and i == 0:
            fault_point("checkpoint:first-rename-done")


def recover_checkpoint(prefix, clean=True):
    """Finish a commit a killed writer left half done and, with ``clean``,
    remove temporary files it left.  Call with the folder locked.

    Returns whether a commit was completed.
    """
    path = journal_path(prefix)
    directory, name = os.path.split(os.path.abspath(prefix))
    completed = False
    if os.path.exists(path):
        try:
            with open(path) as f:
                journal = json.load(f)
            _apply_journal(journal)
            completed = True
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            os.unlink(path)
        except OSError:
            pass
    if clean and os.path.isdir(directory):
        for leftover in os.listdir(directory):
            if leftover.startswith("." + name + "-") and leftover.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(directory, leftover))
                except OSError:
                    pass
    return completed


def write_checkpoint(prefix, symbol, arg_params, aux_params, meta, epoch=0, force=False):
    """Write, verify and rename a checkpoint into place; return its paths.

    ``arg_params``/``aux_params`` map names to numpy arrays (float32, or int8
    for quantized weights), saved with their dtype.  The meta records the
    sha256 of the params and symbol files, so a params file that does not
    belong to its meta (a mix of two writes, a damaged copy) is detected on
    loading.  Writers of one folder take turns (a lock on the folder); nothing
    is left behind if any step fails.
    """
    check_writable(prefix, epoch, force)
    directory = os.path.dirname(os.path.abspath(prefix))
    temps = {}
    try:
        os.makedirs(directory, exist_ok=True)
        with directory_lock(directory):
            recover_checkpoint(prefix)
            paths = check_writable(prefix, epoch, force)
            fault_point("checkpoint:before-temp-files")
            temps = {key: _temp_path(path) for key, path in paths.items()}
            mx.nd.save(temps["params"], params_dict(arg_params, aux_params))
            fault_point("checkpoint:params-written")
            verify_params_file(temps["params"], arg_params, aux_params)
            symbol.save(temps["symbol"])
            make_sure(mx.sym.load(temps["symbol"]).tojson() == symbol.tojson(),
                      "%s: reloaded symbol differs from what was written", paths["symbol"])
            meta = dict(meta, files={
                key: {"name": os.path.basename(paths[key]), "sha256": sha256_file(temps[key])}
                for key in ("params", "symbol")})
            with open(temps["meta"], "w") as f:
                json.dump(meta, f, indent=1)
                f.write("\n")
            mode = file_mode()
            for key in ("params", "symbol", "meta"):
                os.chmod(temps[key], mode)
            journal = {"renames": [[temps[k], paths[k]] for k in ("params", "symbol", "meta")]}
            with atomic_path(journal_path(prefix)) as tmp:
                with open(tmp, "w") as f:
                    json.dump(journal, f)
            fault_point("checkpoint:journal-written")
            _apply_journal(journal, writer=True)
            os.unlink(journal_path(prefix))
            fault_point("checkpoint:committed")
    except (OSError, mx.base.MXNetError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
            [l for l in str(exc).splitlines() if l.strip()][-1]
        raise InputError("%s: cannot write the checkpoint (%s)" % (prefix, detail))
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
    return paths
