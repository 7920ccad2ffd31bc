"""Errors that mean "bad input", as opposed to bugs."""


class InputError(Exception):
    """Bad input: a one-line message naming the file, layer or flag and what was
    expected.  Command-line tools print it and exit with status 2."""


def make_sure(condition, message, *args, error=InputError):
    """Raise ``error(message % args)`` unless ``condition`` holds."""
    if not condition:
        raise error(message % args if args else message)


def mxnet_error_text(exc):
    """The informative line of an MXNet error (they start with a C++ traceback)."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
