"""``python -m xception_mx moved``: the table of modules that moved (old name -> new name).
Without an argument: the version and the commands."""
import sys

from xception_mx import __version__
from xception_mx._moved import MOVED

COMMANDS = ("keras2mxnet", "xception-parity", "xception-predict", "xception-quantize",
            "xception-evaluate", "xception-pack", "xception-finetune", "xception-launch",
            "xception-export", "mxnet2keras")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["moved"]:
        for old, new in sorted(MOVED.items()):
            print("%-46s -> %s" % (old, new.replace("+", " + ")))
        return 0
    if argv:
        print("python -m xception_mx: unknown argument %s; `moved` prints the modules that "
              "moved" % " ".join(argv), file=sys.stderr)
        return 2
    print("xception-mx %s; commands: %s (each takes --help); `python -m xception_mx moved` "
          "prints the modules that moved" % (__version__, ", ".join(COMMANDS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
