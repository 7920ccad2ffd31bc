"""``xception-predict``: top-k classes of images with an MXNet checkpoint alone."""
import sys

from xception_mx.commands.arguments import (add_channel_padding, add_epoch, add_labels,
                                            add_onednn_isa, add_precision, add_transform)
from xception_mx.commands.runner import Parser, run
from xception_mx.cpu import one_precision_process
from xception_mx.images.decode import image_files
from xception_mx.images.transforms import TRANSFORM_TEXT
from xception_mx.serving.predict import PROG, format_predictions, json_lines, predict_files


def build_parser():
    parser = Parser(prog=PROG, description="Print the top-k classes of images with an MXNet "
                    "Xception checkpoint (no TensorFlow needed).")
    parser.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--top", type=int, default=5, help="classes shown per image")
    add_labels(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    add_epoch(parser)
    add_precision(parser, "fp32 (oneDNN-fused), bf16 or int8 (default: auto, the checkpoint's "
                  "own, fp32 unless written by xception-quantize)")
    parser.add_argument("--calib-images", metavar="DIR",
                        help="with --precision int8: calibration images (default: IMAGES)")
    add_transform(parser)
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per line and image: {"image": path, "top": '
                             '[[name, probability], ...]}')
    add_channel_padding(parser)
    add_onednn_isa(parser)
    return parser


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    parser.check_minimums(args, top=1, batch_size=1)
    calib = None
    if args.calib_images:
        if args.precision != "int8":
            parser.error("--calib-images goes with --precision int8")
        calib = image_files(args.calib_images)
    one_precision_process()                   # one network: auto may cap fp32's kernels
    results = predict_files(args.prefix, image_files(args.images), args.top, args.batch_size,
                            args.labels, args.epoch, args.precision, calib,
                            args.channel_padding, args.onednn_isa, args.transform)
    print("images: %s" % TRANSFORM_TEXT[args.transform], file=sys.stderr)
    print(json_lines(results) if args.json else format_predictions(results))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)

