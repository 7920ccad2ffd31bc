"""``xception-export``: a checkpoint packed for serving: a Multi Model Server archive whose
service answers as ``xception-predict --json`` does, or an ONNX model checked by ONNX
Runtime."""
import os
import sys

from xception_mx.commands.arguments import (add_epoch, add_force, add_labels, add_precision,
                                            add_transform)
from xception_mx.commands.runner import EXIT_MISMATCH, Parser, run
from xception_mx.deploy import FORMATS
from xception_mx.errors import make_sure
from xception_mx.outputs import output_file

PROG = "xception-export"
SERVING_PINS = "pip install multi-model-server==1.1.11 model-archiver==1.0.3 (make setup-serving)"
ONNX_PINS = "pip install onnx==1.17.0 onnxruntime==1.32.0 (make setup-serving)"
# The options only some formats take: {dest: formats}
SERVICES = ("mms", "sagemaker")          # the formats whose service answers requests
# (SageMaker's toolkit hands the service one request at a time: a batch of 1)
FORMAT_OPTIONS = {"calib_images": SERVICES, "top": SERVICES, "batch_size": ("mms",),
                  "check_images": ("onnx",)}
DEFAULTS = {"top": 5, "batch_size": 1}


def build_parser():
    parser = Parser(prog=PROG, description="Pack an MXNet Xception checkpoint for serving. "
                    "mms: a Multi Model Server archive (NAME.mar) whose service takes "
                    "JPEG/PNG/WebP bodies and answers with the top classes as JSON, decoded, "
                    "resized and run as xception-predict does.  sagemaker: model.tar.gz for "
                    "SageMaker's MXNet inference containers, with the same service as "
                    "code/inference.py.  onnx: an ONNX model "
                    "(NAME.onnx, batch size dynamic, opset 13) checked by ONNX Runtime "
                    "against MXNet before it is written, with NAME-report.json (the check) "
                    "and NAME-labels.txt.")
    parser.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="mms: NAME.mar (NAME: the model's name on the server); "
                             "sagemaker: NAME.tar.gz; onnx: NAME.onnx")
    add_epoch(parser)
    add_precision(parser, "what the server computes in: auto (the checkpoint's own), fp32 "
                  "(oneDNN-fused), bf16 or int8 (calibrated now, on --calib-images); onnx "
                  "writes fp32 only")
    parser.add_argument("--calib-images", nargs="+", metavar="IMAGE",
                        help="mms, sagemaker: with --precision int8, calibration images or "
                             "folders")
    parser.add_argument("--top", type=int, help="mms, sagemaker: classes per image in answers "
                        "(default: %d)" % DEFAULTS["top"])
    parser.add_argument("--batch-size", type=int,
                        help="mms: images per forward pass in the server (a pass of fewer "
                             "is padded): MMS's batch_size for the model (default: 1, MMS's "
                             "unless registered with batching)")
    parser.add_argument("--check-images", nargs="+", metavar="IMAGE",
                        help="onnx: images or folders the check runs on, beside 3 seeded "
                             "random inputs (decoded as --transform says)")
    add_labels(parser)
    add_transform(parser)
    add_force(parser, help="overwrite an existing OUT")
    return parser


def checked_arguments(parser, argv):
    """The arguments, each option checked against the format: one another format takes is
    refused, not ignored."""
    args = parser.parse_args(argv)
    for dest, formats in FORMAT_OPTIONS.items():
        if getattr(args, dest) is not None and args.format not in formats:
            parser.error("--%s: only --format %s takes it" % (dest.replace("_", "-"),
                                                              "/".join(formats)))
    for dest, value in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    parser.check_minimums(args, top=1, batch_size=1)
    if args.format == "onnx" and args.precision in ("bf16", "int8"):
        parser.error("--precision %s: --format onnx writes the fp32 network (ONNX Runtime "
                     "converts or quantizes it itself); pass --precision fp32 or auto"
                     % args.precision)
    output_file(args.output, "-o")
    make_sure(args.force or not os.path.exists(args.output),
              "%s: already exists; pass --force to overwrite it", args.output)
    return args


def _main(argv):
    parser = build_parser()
    args = checked_arguments(parser, argv)
    return (export_onnx if args.format == "onnx" else export_service)(parser, args)


def export_service(parser, args):
    """mms or sagemaker: the checkpoint with the service that answers requests."""
    if args.format == "mms":
        try:
            import model_archiver  # noqa: F401
        except ImportError:
            parser.error("--format mms needs model-archiver: %s" % SERVING_PINS)
        from xception_mx.deploy.mms import write_mar as write
        what = "Multi Model Server archive"
    else:
        from xception_mx.deploy.sagemaker import write_model_tar as write
        what = "SageMaker model (code/inference.py)"
    config = write(args.prefix, args.output, epoch=args.epoch, precision=args.precision,
                   calibration=args.calib_images, top=args.top, transform=args.transform,
                   batch_size=args.batch_size, labels=args.labels)
    print("%s: %s: %s, %s, top %d, images: --transform %s"
          % (PROG, args.output, what, "int8" if args.precision == "int8" else
             config["precision"], config["top"], config["transform"]))
    return 0


def export_onnx(parser, args):
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        parser.error("--format onnx needs onnx and onnxruntime: %s" % ONNX_PINS)
    from xception_mx.deploy.onnx_export import companions, write_onnx
    report = write_onnx(args.prefix, args.output, epoch=args.epoch, images=args.check_images,
                        transform=args.transform, labels=args.labels, force=args.force)
    worst = next(r for r in report["tensors"] if r["tensor"] == report["worst"])
    print("%s: ONNX Runtime %s against MXNet on %d inputs, batch sizes %s: largest difference "
          "%.2g (%s), %s %.0e" % (PROG, report["onnxruntime"], len(report["inputs"]),
                                  " and ".join(map(str, report["batch_sizes"])),
                                  worst["max_abs_difference"], worst["tensor"],
                                  "within" if report["passed"] else "NOT within",
                                  worst["tolerance"]))
    if not report["passed"]:
        print("%s: %s: not written: ONNX Runtime's %s differs from MXNet's by %.3g"
              % (PROG, args.output, worst["tensor"], worst["max_abs_difference"]),
              file=sys.stderr)
        return EXIT_MISMATCH
    print("%s: %s: ONNX model (opset %d, batch size dynamic); the check: %s"
          % (PROG, args.output, report["opset"], companions(args.output)["report"]))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)
