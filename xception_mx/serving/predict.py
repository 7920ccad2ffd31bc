"""``xception-predict``: top-k classes of images with an MXNet checkpoint alone."""
import os
import sys

import numpy as np

from xception_mx.cli import Parser, run
from xception_mx.cpu import ISA_CHOICES, isa_capped
from xception_mx.errors import InputError
from xception_mx.model.padding import resolve_padding
from xception_mx.model.preprocess import image_files
from xception_mx.model.transfer import output_kind
from xception_mx.serving.fast import PRECISIONS, add_padding_argument, load_fast_network
from xception_mx.serving.labels import class_names
from xception_mx.serving.loading import (checkpoint_images, is_serving_copy, is_transfer,
                                         read_meta, run_batches)

PROG = "xception-predict"


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def checkpoint_output_kind(meta):
    """``output_kind`` of a transfer model; for plain Xception ``"logits"``,
    or ``"features"`` when it has no top (pooled or not)."""
    if is_transfer(meta):
        return output_kind(meta["model"]["transfer"])
    return "logits" if meta.get("model", {}).get("include_top", True) else "features"


def check_finite_outputs(prefix, files, outputs, precision):
    """Refuse to rank NaN or infinite outputs (the parameters were checked
    when loaded: the computation overflowed), naming the image."""
    finite = np.isfinite(outputs).all(axis=1)
    if not finite.all():
        raise InputError("%s: the output for %s holds NaN or infinity: the %s computation "
                         "overflowed" % (prefix, files[int(np.argmin(finite))], precision))


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
    meta = read_meta(prefix)
    kind = checkpoint_output_kind(meta)
    precision = precision or meta.get("precision", "fp32")
    padded = (meta.get("optimized", {}).get("padded_convolutions", 0) > 0
              if is_serving_copy(meta)
              else resolve_padding(channel_padding, precision=precision))
    with isa_capped(onednn_isa, precision, padded):
        x = checkpoint_images(files, meta)
        calibration = checkpoint_images(calib_files, meta) if calib_files else x
        net, _ = load_fast_network(prefix, epoch, precision, batch_size, calibration, padded)
        outputs = run_batches(net, x, batch_size)
    if outputs.ndim != 2 or kind == "features":
        raise InputError("%s: a feature extractor (output %s), not a classifier"
                         % (prefix, outputs.shape[1:]))
    check_finite_outputs(prefix, files, outputs, precision)
    names = class_names(prefix, outputs.shape[1], labels)
    # logits go through softmax; a model's own probabilities or scores (a
    # sigmoid multi-label head, say) are shown as the model gives them
    probabilities = softmax(outputs) if kind == "logits" else outputs
    results = []
    for path, p in zip(files, probabilities):
        order = np.argsort(-p)[:top]
        results.append((path, [(float(p[i]), int(i), names[i]) for i in order]))
    return results


def format_predictions(results):
    lines = []
    for path, ranked in results:
        lines.append(path)
        lines += ["  %d. %.4f  %s" % (rank, p, name)
                  for rank, (p, _, name) in enumerate(ranked, 1)]
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
    if args.top < 1:
        parser.error("--top must be >= 1, got %d" % args.top)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1, got %d" % args.batch_size)
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
