"""Errors that mean "bad input", as opposed to bugs."""


class InputError(Exception):
    """Bad input: a one-line message naming the file, layer or flag and what was
    expected.  Command-line tools print it and exit with status 2."""
