"""The one exception type the converter raises for bad input."""
from xception_mx.errors import InputError


class ConversionError(InputError):
    """Bad input: the message is one line that names the file, layer or flag
    and says what was expected.  CLIs print it and exit with status 2."""


def make_sure(condition, message, *args):
    """Raise ``ConversionError(message % args)`` unless ``condition`` holds."""
    if not condition:
        raise ConversionError(message % args if args else message)
