"""What every command-line tool of the toolkit shares: one-line errors and
exit status 2 for bad input, never a traceback for it."""
import argparse
import sys

from .errors import InputError

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, "%s: error: %s\n" % (self.prog, message))


def run(prog, body, argv=None):
    """Call ``body(argv)``; report ``InputError`` as one line and return 2."""
    try:
        return body(argv)
    except InputError as exc:
        print("%s: error: %s" % (prog, exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        return 130
