"""``mxnet2keras``: an MXNet Xception checkpoint back to Keras."""
from xception_mx.commands.arguments import add_epoch, add_force
from xception_mx.commands.runner import Parser, run
from xception_mx.conversion.mxnet_to_keras import PROG, output_format, write_keras


def build_parser():
    parser = Parser(prog=PROG, description="Write an MXNet Xception checkpoint (keras2mxnet or "
                    "xception-finetune) as a Keras file: legacy .h5 weights, .weights.h5 or "
                    ".keras.  Needs the [validate] extra (Keras writes the file).")
    parser.add_argument("prefix", metavar="PREFIX", help="the MXNet checkpoint "
                        "(PREFIX-symbol.json, PREFIX-%%04d.params, PREFIX-meta.json)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the Keras file; its suffix picks the format: .h5 (legacy "
                             "weights), .weights.h5 (Keras 3 weights) or .keras (whole model; "
                             "the only one for a base + head model)")
    add_epoch(parser)
    add_force(parser, help="overwrite OUT if it exists")
    return parser


def _main(argv):
    args = build_parser().parse_args(argv)
    output_format(args.output)
    written, _ = write_keras(args.prefix, args.output, args.epoch, args.force)
    print("%s: wrote %s" % (PROG, ", ".join(written)))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)

