"""``xception-parity``: prove an MXNet checkpoint computes what the Keras model does."""
import json
import sys

from xception_mx.cli import EXIT_MISMATCH, EXIT_OK, Parser, run

from .parity import format_records, run_parity, within_tolerance

PROG = "xception-parity"


def build_parser():
    parser = Parser(prog=PROG, description="Run a Keras Xception and its MXNet conversion on "
                    "the same images and compare their logits (or features).  Exit status: "
                    "0 within tolerance, 1 beyond it, 2 on bad input.")
    parser.add_argument("--keras", required=True, metavar="WEIGHTS",
                        help="the Keras weights or model file (any format keras2mxnet reads)")
    parser.add_argument("--mxnet", required=True, metavar="PREFIX", help="the MXNet checkpoint")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--epoch", type=int, default=0)
    parser.add_argument("--input-shape", nargs=2, type=int, metavar=("H", "W"),
                        help="input size (default: the checkpoint's)")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="also compare N seeded random inputs in [-1, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest allowed |keras - mxnet| (default 1e-4)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--report", metavar="JSON", help="also write the report as JSON")
    return parser


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.random < 0:
        build_parser().error("--random must be >= 0, got %d" % args.random)
    if args.batch_size < 1:
        build_parser().error("--batch-size must be >= 1, got %d" % args.batch_size)
    records, details = run_parity(args.keras, args.mxnet, args.images, args.random, args.seed,
                                  args.input_shape and tuple(args.input_shape), args.epoch,
                                  args.batch_size)
    print(format_records(records, args.atol))
    ok = within_tolerance(records, args.atol)
    if args.report:
        report = dict(details, atol=args.atol, passed=ok,
                      inputs=[r._asdict() for r in records])
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    return EXIT_OK if ok else EXIT_MISMATCH


def main(argv=None):
    return run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
