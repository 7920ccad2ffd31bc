"""``xception-predict``: top-k classes of images with an MXNet checkpoint alone."""
import os
import sys

from xception_mx.cli import Parser, run
from xception_mx.cpu import ISA_CHOICES
from xception_mx.errors import InputError
from xception_mx.images.decode import image_files
from xception_mx.serving.fast import PRECISIONS, add_padding_argument
from xception_mx.serving.runtime import Model, is_ranked

PROG = "xception-predict"


def predict_files(prefix, files, top=5, batch_size=8, labels=None, epoch=0, precision=None,
                  calib_files=None, channel_padding="auto", onednn_isa="auto"):
    """``[(file, [(probability, class index, name)...])]`` for each image.

    ``precision``: ``fp32`` (oneDNN-fused), ``bf16`` or ``int8`` (calibrated
    on ``calib_files``, default the images themselves); ``channel_padding``: auto, on, off
    (see ``padding``); ``onednn_isa``: oneDNN's ISA cap for this process (see ``cpu``), which
    holds only if this is the process's first computation; the environment variable is
    given back afterwards.
    """
    for path in list(files) + list(calib_files or []):
        if not os.path.isfile(path):
            raise InputError("%s: no such image file" % path)
    model = Model(prefix, precision or "auto", epoch, batch_size, labels=labels,
                  channel_padding=channel_padding, onednn_isa=onednn_isa,
                  calibration=list(calib_files) if calib_files else None)
    return list(zip(files, model.ranked(list(files), top, list(files), progress=True)))


def _ranked_lines(ranked, indent="  "):
    return ["%s%d. %.4f  %s" % (indent, rank, p, name)
            for rank, (p, _, name) in enumerate(ranked, 1)]


def format_predictions(results):
    """Per image its path, then its top classes; for a model with several outputs each
    output's name, then its top classes or its values."""
    lines = []
    for path, ranked in results:
        lines.append(path)
        if not isinstance(ranked, dict):
            lines += _ranked_lines(ranked)
            continue
        for output, entries in ranked.items():
            if is_ranked(entries):
                lines.append("  %s:" % output)
                lines += _ranked_lines(entries, "    ")
            else:
                lines.append("  %s: %s" % (output, " ".join("%.4f" % v for v in entries)))
    return "\n".join(lines)


def build_parser():
    parser = Parser(prog=PROG, description="Print the top-k classes of images with an MXNet "
                    "Xception checkpoint (no TensorFlow needed).")
    parser.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--top", type=int, default=5, help="classes shown per image")
    parser.add_argument("--labels", metavar="FILE",
                        help="class names, one per line (default: PREFIX-labels.txt, or "
                             "ImageNet's for 1000 classes)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--epoch", type=int, default=0, help="which PREFIX-%%04d.params")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="fp32 (oneDNN-fused), bf16 or int8 (default: the checkpoint's, "
                             "fp32 unless written by xception-quantize)")
    parser.add_argument("--calib-images", metavar="DIR",
                        help="with --precision int8: calibration images (default: IMAGES)")
    add_padding_argument(parser)
    parser.add_argument("--onednn-isa", choices=ISA_CHOICES, default="auto",
                        help="the instruction sets oneDNN may use: avx512_mic, avx2 cap "
                             "fp32 to older kernels that take one layout throughout, so the "
                             "depthwise reorders go; amx lets int8 and bf16 run on Intel's "
                             "AMX kernels, which oneDNN leaves out unless asked; auto: where "
                             "that is faster (the cap on AMD CPUs with AVX-512, AMX where the "
                             "CPU has it), or DNNL_MAX_CPU_ISA if set")
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
    results = predict_files(args.prefix, image_files(args.images), args.top, args.batch_size,
                            args.labels, args.epoch, args.precision, calib,
                            args.channel_padding, args.onednn_isa)
    print(format_predictions(results))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
