"""``xception-quantize``: write an int8 (oneDNN) copy of a checkpoint,
calibrated on sample images; normal symbol/params/meta files."""
import sys

from .cli import Parser, run
from .fast import quantize_checkpoint
from .preprocess import image_files
from .serving import checkpoint_images, read_meta

PROG = "xception-quantize"


def build_parser():
    parser = Parser(prog=PROG, description="Quantize an Xception checkpoint to int8 with "
                    "oneDNN, calibrated on sample images (min/max per layer).")
    parser.add_argument("prefix", metavar="PREFIX", help="fp32 checkpoint")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="int8 checkpoint")
    parser.add_argument("--calib-images", required=True, nargs="+", metavar="IMAGE",
                        help="calibration images or folders (a dozen representative images)")
    parser.add_argument("--epoch", type=int, default=0, help="which PREFIX-%%04d.params")
    parser.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    return parser


def _main(argv):
    args = build_parser().parse_args(argv)
    files = image_files(args.calib_images)
    calibration = checkpoint_images(files, read_meta(args.prefix))
    paths = quantize_checkpoint(args.prefix, args.output, calibration, args.epoch, args.force,
                                calibration_source=[str(f) for f in files])
    print("%s: int8 checkpoint calibrated on %d images: %s" % (
        PROG, len(files), ", ".join(paths[k] for k in ("symbol", "params", "meta"))))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
