#!/usr/bin/env python
"""Write a small synthetic three-class texture dataset as an image folder."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shapes_dataset import write_shapes_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="folder to write (one subfolder per class)")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    classes = write_shapes_dataset(args.root, args.per_class, (args.size, args.size), args.seed)
    print("wrote %d images of %s to %s" % (args.per_class * len(classes), ", ".join(classes),
                                           args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
