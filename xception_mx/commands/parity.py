"""``xception-parity``: prove an MXNet checkpoint computes what the Keras model does."""
import json

from xception_mx.atomic import write_text
from xception_mx.commands.arguments import add_epoch
from xception_mx.commands.runner import EXIT_MISMATCH, EXIT_OK, Parser, run
from xception_mx.outputs import output_file
from xception_mx.validation.layers import plot_layers
from xception_mx.validation.metrics import json_safe
from xception_mx.validation.training_parity import run_training_parity
from xception_mx.validation.training_report import culprit, format_training
from xception_mx.validation.verdict import check_parity

PROG = "xception-parity"


def build_parser():
    parser = Parser(prog=PROG, description="Run a Keras Xception and its MXNet conversion on "
                    "the same images and compare their logits (or features).  Exit status: "
                    "0 within tolerance, 1 beyond it, 2 on bad input.")
    parser.add_argument("--keras", required=True, metavar="WEIGHTS",
                        help="the Keras weights or model file (any format keras2mxnet reads)")
    parser.add_argument("--mxnet", required=True, metavar="PREFIX", help="the MXNet checkpoint")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    add_epoch(parser)
    parser.add_argument("--input-shape", nargs=2, type=int, metavar=("H", "W"),
                        help="input size (default: the checkpoint's)")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="also compare N seeded random inputs in [-1, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --random inputs")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest allowed |keras - mxnet| (default 1e-4); per layer, "
                             "applied to the deviation divided by max(1, max|keras|)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--per-layer", action="store_true",
                        help="compare every intermediate layer output and name the first "
                             "layer whose deviation exceeds the tolerance")
    parser.add_argument("--training", action="store_true",
                        help="compare one training step instead, with the file's compiled "
                             "loss, regularizers and optimizer (loss, logits, every layer's "
                             "training-mode output, BatchNorm moving statistics, gradients in "
                             "float64, the weights after two optimizer steps; without a "
                             "compiled optimizer: keras-sgd, keras-adam, keras-adamw); labels "
                             "seeded at random unless --labels-from")
    parser.add_argument("--labels-from", metavar="FOLDER",
                        help="with --training: the images and labels of a class folder (one "
                             "subfolder per class, as many as the model has)")
    parser.add_argument("--freeze-bn", action="store_true",
                        help="with --training: the step of xception-finetune --freeze-bn "
                             "(every BatchNorm on its moving statistics, gamma and beta "
                             "trained), against Keras calling each BatchNorm with "
                             "training=False")
    parser.add_argument("--report", metavar="JSON", help="also write the report as JSON")
    parser.add_argument("--plot", metavar="PNG",
                        help="with --per-layer: draw deviation against depth")
    return parser


def _check_args(parser, args):
    parser.check_minimums(args, random=0, batch_size=1)
    if not args.atol > 0:
        parser.error("--atol must be > 0, got %g" % args.atol)
    if args.plot and not args.per_layer:
        parser.error("--plot draws the per-layer table; add --per-layer")
    if args.labels_from and not args.training:
        parser.error("--labels-from goes with --training")
    if args.freeze_bn and not args.training:
        parser.error("--freeze-bn goes with --training")
    if args.training and (args.per_layer or args.input_shape):
        parser.error("--training compares every layer itself, at the checkpoint's size; drop "
                     "--per-layer and --input-shape")
    output_file(args.report, "--report")
    output_file(args.plot, "--plot")


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    if args.training:
        return _training(args)
    result = check_parity(args.keras, args.mxnet, args.images, args.random, args.seed,
                          args.input_shape, args.epoch, args.batch_size, args.per_layer,
                          args.atol)
    if result.details.get("keras_mixed_precision"):
        print("note: %s computes in %s; compared in float32 (its weights are float32), as the "
              "checkpoint computes" % (args.keras, result.details["keras_mixed_precision"]))
    print(result)
    if args.plot:
        plot_layers(result.layers, args.atol, args.plot,
                    title="%s vs %s, per layer" % (args.keras, args.mxnet))
        print("plot: %s" % args.plot)
    if args.report:
        write_text(args.report, json.dumps(json_safe(result.report()), indent=1) + "\n")
        print("report: %s" % args.report)
    return EXIT_OK if result.passed else EXIT_MISMATCH


def _training(args):
    records, details = run_training_parity(args.keras, args.mxnet, args.images,
                                           args.labels_from, args.random, args.seed,
                                           args.epoch, args.atol,
                                           freeze_bn=args.freeze_bn)
    print(format_training(records, details))
    found = culprit(records)
    if args.report:
        report = dict(details, passed=found is None,
                      first_layer_beyond_tolerance=found and found.keras_layer,
                      records=[r._asdict() for r in records])
        write_text(args.report, json.dumps(json_safe(report), indent=1) + "\n")
        print("report: %s" % args.report)
    return EXIT_OK if found is None else EXIT_MISMATCH


def main(argv=None):
    return run(PROG, _main, argv)

