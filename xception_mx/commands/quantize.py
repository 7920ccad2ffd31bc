"""``xception-quantize``: write a ready-to-serve copy of a checkpoint (int8 calibrated on
sample images, bf16, or fused fp32; channels padded for oneDNN) as normal
symbol/params/meta files."""

from xception_mx.checkpoint.files import check_writable
from xception_mx.checkpoint.reading import read_meta, symbol_path
from xception_mx.commands.arguments import add_channel_padding, add_epoch, add_force, add_precision
from xception_mx.commands.runner import Parser, run
from xception_mx.images.decode import image_files
from xception_mx.serving.fast import BF16_REFUSAL, export_checkpoint
from xception_mx.serving.loading import checkpoint_images
from xception_mx.serving.tuning import tuned_choice

PROG = "xception-quantize"


def build_parser():
    parser = Parser(prog=PROG, description="Write the fast network of an Xception checkpoint "
                    "as a ready-to-serve checkpoint that plain mx.mod.Module and "
                    "SymbolBlock.imports load: int8 (oneDNN post-training quantization, "
                    "calibrated on sample images: min/max per layer) or the oneDNN-fused fp32 "
                    "graph; channel counts padded for oneDNN, logits output.")
    parser.add_argument("prefix", metavar="PREFIX", help="fp32 checkpoint")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="prefix of the copy written")
    add_precision(parser, "what the copy computes in (bf16 is refused: it is converted at "
                  "load time, by xception-predict --precision bf16)", default="int8", own=False)
    parser.add_argument("--calib-images", nargs="+", metavar="IMAGE",
                        help="int8: calibration images or folders (a dozen representative "
                             "images)")
    add_channel_padding(parser)
    add_epoch(parser)
    add_force(parser, help="overwrite an existing OUT")
    return parser


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.precision == "int8" and not args.calib_images:
        parser.error("--precision int8 (the default) needs --calib-images IMAGE... (a dozen "
                     "representative images or folders to calibrate on)")
    if args.precision == "bf16":
        parser.error(BF16_REFUSAL)
    if args.precision != "int8" and args.calib_images:
        parser.error("--calib-images calibrates int8; --precision %s takes none"
                     % args.precision)
    check_writable(args.output, 0, args.force)     # before calibration and measurement
    symbol_path(args.prefix)          # no checkpoint there: said before any of that work
    meta = read_meta(args.prefix)
    calibration, files = None, []
    if args.calib_images:
        files = image_files(args.calib_images)
        calibration = checkpoint_images(files, meta)
    padding = args.channel_padding
    if padding == "auto" and args.precision != "bf16":    # measured for the copy's precision
        tuned = None if meta.is_serving_copy else tuned_choice(
            args.prefix, args.epoch, meta, args.precision, 8, "auto", "all")
        padding = padding if tuned is None else tuned.padded
    paths = export_checkpoint(args.prefix, args.output, args.precision, calibration,
                              args.epoch, args.force, [str(f) for f in files] or None,
                              padding)
    print("%s: %s checkpoint%s: %s" % (
        PROG, args.precision, " calibrated on %d images" % len(files) if files else "",
        ", ".join(paths[k] for k in ("symbol", "params", "meta"))))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)

