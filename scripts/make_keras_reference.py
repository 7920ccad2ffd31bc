#!/usr/bin/env python
"""Have Keras write a seeded Xception weights file (no download needed).

The weights are random (seeded), with non-trivial BatchNorm statistics, gamma
and beta, so that a conversion that swaps or drops any tensor is caught.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import reference_models  # noqa: E402  (beside this script)
from xception_mx.keras_side import loading as keras_side  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="file to write")
    parser.add_argument("--format", choices=keras_side.FORMATS, default="legacy-h5",
                        help="Keras file format (default legacy-h5, as the downloadable files)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--notop", action="store_true", help="without the classifier")
    parser.add_argument("--transfer", action="store_true",
                        help="the keras.io guide's base + head model instead (preprocess_input, "
                             "Xception base, Dense 256 + BatchNorm, --classes softmax; "
                             "formats keras and legacy-model-h5)")
    args = parser.parse_args(argv)
    if args.transfer:
        if args.format not in ("keras", "legacy-model-h5"):
            parser.error("--transfer: a whole model: --format keras or legacy-model-h5")
        model = reference_models.reference_transfer_model(seed=args.seed, classes=args.classes)
    else:
        model = reference_models.reference_model(seed=args.seed, include_top=not args.notop,
                                           classes=args.classes)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp" + keras_side.SUFFIX[args.format]
    keras_side.save_keras(model, tmp, args.format)
    os.replace(tmp, args.output)
    print("wrote %s (Keras %s format, seed %d)" % (args.output, args.format, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
