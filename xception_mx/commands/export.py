"""``xception-export``: a checkpoint packed for serving: a Multi Model Server archive whose
service answers as ``xception-predict --json`` does."""
import os

from xception_mx.commands.arguments import (add_epoch, add_force, add_labels, add_precision,
                                            add_transform)
from xception_mx.commands.runner import Parser, run
from xception_mx.deploy import FORMATS
from xception_mx.errors import make_sure
from xception_mx.outputs import output_file

PROG = "xception-export"
SERVING_PINS = "pip install multi-model-server==1.1.11 model-archiver==1.0.3 (make setup-serving)"


def build_parser():
    parser = Parser(prog=PROG, description="Pack an MXNet Xception checkpoint for serving. "
                    "mms: a Multi Model Server archive (NAME.mar) whose service takes "
                    "JPEG/PNG/WebP bodies and answers with the top classes as JSON, decoded, "
                    "resized and run as xception-predict does.")
    parser.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="mms: NAME.mar (NAME: the model's name on the server)")
    add_epoch(parser)
    add_precision(parser, "what the server computes in: auto (the checkpoint's own), fp32 "
                  "(oneDNN-fused), bf16 or int8 (calibrated now, on --calib-images)")
    parser.add_argument("--calib-images", nargs="+", metavar="IMAGE",
                        help="with --precision int8: calibration images or folders")
    parser.add_argument("--top", type=int, default=5, help="classes per image in answers")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per forward pass in the server (a pass of fewer is "
                             "padded): MMS's batch_size for the model, 1 unless registered "
                             "with batching")
    add_labels(parser)
    add_transform(parser)
    add_force(parser, help="overwrite an existing OUT")
    return parser


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    parser.check_minimums(args, top=1, batch_size=1)
    output_file(args.output, "-o")
    make_sure(args.force or not os.path.exists(args.output),
              "%s: already exists; pass --force to overwrite it", args.output)
    try:
        import model_archiver  # noqa: F401
    except ImportError:
        parser.error("--format mms needs model-archiver: %s" % SERVING_PINS)
    from xception_mx.deploy.mms import write_mar
    config = write_mar(args.prefix, args.output, epoch=args.epoch, precision=args.precision,
                       calibration=args.calib_images, top=args.top, transform=args.transform,
                       batch_size=args.batch_size, labels=args.labels)
    print("%s: %s: Multi Model Server archive, %s, top %d, images: --transform %s"
          % (PROG, args.output, "int8" if args.precision == "int8" else config["precision"],
             config["top"], config["transform"]))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)
