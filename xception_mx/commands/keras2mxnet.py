"""``keras2mxnet``: convert Keras Xception weights into an MXNet checkpoint."""
import os
import re
import sys
import time

from xception_mx.commands.arguments import add_epoch, add_force
from xception_mx.commands.runner import Parser, run
from xception_mx.conversion.converter import (convert, convert_file, find_standard_weights,
                                              head_options)
from xception_mx.conversion.errors import make_sure
from xception_mx.conversion.name_table import format_table
from xception_mx.images.convention import color_name

PROG = "keras2mxnet"
KERAS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def default_prefix(weights_path):
    """``./<file name without its Keras suffix>``."""
    name = os.path.basename(weights_path)
    for suffix in KERAS_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def build_parser():
    parser = Parser(prog=PROG, description="Convert Keras Xception weights (legacy .h5 weights "
                    "or model files, Keras 3 .weights.h5 or .keras) into an MXNet checkpoint "
                    "PREFIX-symbol.json + PREFIX-NNNN.params + PREFIX-meta.json.")
    parser.add_argument("weights", nargs="?", metavar="WEIGHTS",
                        help="Keras file; default: Keras' standard Xception file in "
                             "~/.keras/models/")
    parser.add_argument("-o", "--output", metavar="PREFIX",
                        help="checkpoint prefix (default: the weights file name without suffix)")
    parser.add_argument("--input-shape", nargs=2, type=int, metavar=("H", "W"),
                        help="input height and width, each >= 71, or any for a model that "
                             "resizes inside (default: the size a model file declares, else "
                             "its Resizing's, else 299 299)")
    parser.add_argument("--classifier-activation", choices=("softmax", "none"),
                        help="output of a file with the top: probabilities (default) or logits")
    parser.add_argument("--pooling", choices=("none", "avg", "max"),
                        help="for a notop file: the feature map (default) or its global pool")
    parser.add_argument("--labels", metavar="NAMES.txt",
                        help="the model's class names, one per line in its output order: "
                             "written as PREFIX-labels.txt, which prediction and evaluation "
                             "read")
    add_epoch(parser, help="epoch number of the .params file")
    add_force(parser)
    parser.add_argument("--strict", action="store_true",
                        help="refuse weights holding NaN or infinity (default: warn)")
    parser.add_argument("--print-name-table", action="store_true",
                        help="print the Keras-to-MXNet name table for WEIGHTS and write nothing")
    return parser


def _options(args):
    return dict(head_options(args.classifier_activation, args.pooling), strict=args.strict,
                input_shape=args.input_shape and tuple(args.input_shape))


def _summary(conversion, paths, seconds):
    net, source = conversion.net, conversion.source
    n_values = sum(v.size for v in conversion.arg_params.values())
    n_values += sum(v.size for v in conversion.aux_params.values())
    if hasattr(net, "spec"):
        head = "transfer model: %s -> %s" % (
            "preprocessing inside" if net.spec["preprocess"] else "preprocessed input",
            " -> ".join(l["name"] for l in net.spec["head"]) or "base")
        if net.branches:
            head += " -> %d outputs (%s)" % (len(net.branches), ", ".join(
                "%s: %s" % (o["name"], o["kind"]) for o in net.config()["outputs"]))
    elif net.include_top:
        head = "classifier, %d classes, %s" % (net.classes, net.classifier_activation or "logits")
    else:
        head = "features, pooling %s" % (net.pooling or "none")
    channels = net.config()["channels"]
    size = "input %dx%dx%d" % ((channels,) + tuple(net.input_size))
    if channels != 3:
        size += " (%s)" % color_name(channels)
    if hasattr(net, "spec") and not net.spec.get("declared_input_shape"):
        size += " (the model takes any size; --input-shape H W sets another)"
    if hasattr(net, "spec") and tuple(net.base_size) != tuple(net.input_size):
        size += ", %dx%d at the base (the model resizes or crops it)" % tuple(net.base_size)
    version = source.attrs.get("keras_version", "unknown")
    return "\n".join([
        "%s: %s (%s, Keras %s)" % (PROG, source.path, source.format, version),
        "  %d tensors, %d values -> %s, %s" % (len(conversion.rows), n_values, head, size),
        "  wrote %s" % ", ".join(paths[k] for k in ("symbol", "params", "meta", "labels")
                                 if k in paths),
        "  verified: reloaded parameters equal the converted ones (%.2f s)" % seconds,
    ])


def _main(argv):
    start = time.time()
    args = build_parser().parse_args(argv)
    make_sure(args.epoch >= 0, "--epoch must be >= 0, got %d", args.epoch)
    weights = args.weights or find_standard_weights()
    if args.print_name_table:
        conversion = convert(weights, **_options(args))
        print(format_table(conversion.rows, conversion.match.file_names))
        return 0
    prefix = args.output or default_prefix(weights)
    make_sure(not re.search(r"[\\/]$", prefix), "-o %s: expected a prefix, not a directory "
              "(e.g. %sxception)", prefix, prefix)
    conversion, paths = convert_file(weights, prefix, epoch=args.epoch, force=args.force,
                                     labels=args.labels, **_options(args))
    for warning in conversion.warnings:
        print("%s: warning: %s" % (PROG, warning), file=sys.stderr)
    print(_summary(conversion, paths, time.time() - start))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)

