"""What every command-line tool of the toolkit shares: one-line errors and
exit status 2 for bad input, never a traceback for it."""
import argparse
import faulthandler
import io
import os
import sys

from xception_mx.cpu import auto_mode
from xception_mx.errors import InputError
from xception_mx.progress import mode as progress_mode

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


class HelpFormatter(argparse.HelpFormatter):
    """Help lines end with the argument's default, unless the line says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default is not None and action.default is not False and \
            action.default is not argparse.SUPPRESS and action.default != ""
        if "default" in text or not shown or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one line on stderr, exit status 2,
    and whose help shows every option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, "%s: error: %s\n" % (self.prog, message))

    def check_minimums(self, args, **minimums):
        """Refuse an integer option below its minimum: ``batch_size=1`` checks
        ``--batch-size``."""
        for name, minimum in minimums.items():
            value = getattr(args, name)
            if value < minimum:
                self.error("--%s must be >= %d, got %d" % (name.replace("_", "-"), minimum,
                                                           value))


def report_crashes():
    """On a native crash (a segmentation fault in MXNet's or Horovod's C++ code), print where
    every Python thread was to stderr: MXNet's own handler prints "Segmentation fault: 11"
    and no stack.  Python's ``faulthandler`` replaces it and hands the signal on to it.
    Left as it is when already on (``-X faulthandler``, pytest); off when stderr is no file
    (a test's capture).  Returns whether it is on."""
    if faulthandler.is_enabled():
        return True
    try:
        faulthandler.enable(all_threads=True)
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False
    return True


def run(prog, body, argv=None):
    """Call ``body(argv)``; report ``InputError`` as one line and return 2, a native crash
    with every thread's Python stack (``report_crashes``)."""
    report_crashes()
    try:
        progress_mode()               # a bad XCEPTION_MX_PROGRESS is said before any work
        auto_mode()                   # and a bad XCEPTION_MX_AUTO
        status = body(argv)
        sys.stdout.flush()            # a closed pipe shows here, not at exit (status 120)
        return status
    except InputError as exc:
        print("%s: error: %s" % (prog, exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``| head``): stop quietly, as command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
