"""Output paths checked before the work that fills them: a report file or a results folder
is refused in one line when it could not be written, so that a long run never ends in a
traceback about where to put its result.  Nothing is made here (a refused run leaves
nothing behind); the writers make the missing parent folders (``atomic.atomic_path``)."""
import os

from xception_mx.errors import make_sure


def nearest_existing(path):
    """The deepest folder of ``path``'s ancestors (or itself) that exists."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return existing


def _check_folder_can_be_made(folder, flag, path):
    existing = nearest_existing(folder)
    make_sure(os.path.isdir(existing), "%s %s: %s is a file, so no folder can be made there",
              flag, path, existing)
    make_sure(os.access(existing, os.W_OK | os.X_OK), "%s %s: cannot write into %s "
              "(permission denied)", flag, path, existing)


def output_file(path, flag):
    """Refuse ``path`` as the output file of option ``flag`` unless it can be written: not a
    folder, and its folder exists or can be made.  Returns ``path`` (None passes through:
    the option was not given)."""
    if path is None:
        return None
    make_sure(not os.path.isdir(path), "%s %s: is a folder; name a file to write", flag, path)
    _check_folder_can_be_made(os.path.dirname(os.path.abspath(path)), flag, path)
    return path


def output_folder(path, flag):
    """Refuse ``path`` as the output folder of option ``flag`` unless it is a folder or can be
    made one.  Returns ``path`` (None passes through)."""
    if path is None:
        return None
    make_sure(not os.path.exists(path) or os.path.isdir(path),
              "%s %s: is a file; name a folder to write into", flag, path)
    _check_folder_can_be_made(path, flag, path)
    return path
