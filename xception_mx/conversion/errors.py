"""The one exception type the converter raises for bad input."""
from xception_mx.errors import InputError
from xception_mx.errors import make_sure as _make_sure


class ConversionError(InputError):
    """Bad input: the message is one line that names the file, layer or flag
    and says what was expected.  CLIs print it and exit with status 2."""


def make_sure(condition, message, *args):
    """Raise ``ConversionError(message % args)`` unless ``condition`` holds."""
    _make_sure(condition, message, *args, error=ConversionError)
