"""``xception-evaluate PREFIX DATA``: accuracy, per-class scores, confusion matrix,
calibration and the misclassified images of a checkpoint on a labelled image folder or
RecordIO."""
import sys

from xception_mx.commands.arguments import add_epoch, add_precision, add_transform
from xception_mx.commands.runner import Parser, run
from xception_mx.cpu import one_precision_process
from xception_mx.evaluation.report import format_table, write_files, write_report
from xception_mx.evaluation.multilabel import evaluate_multilabel, format_multilabel
from xception_mx.evaluation.run import evaluate
from xception_mx.outputs import output_file, output_folder
from xception_mx.serving.plan import PRECISIONS

PROG = "xception-evaluate"


def build_parser():
    p = Parser(prog=PROG, description="Score a checkpoint on a labelled image folder or "
               "RecordIO: accuracy, per-class precision/recall/F1, confusion matrix, "
               "calibration, the misclassified images; against Keras or another precision on "
               "the same images.")
    p.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix")
    p.add_argument("data", metavar="DATA", nargs="?", help="image folder (one subfolder per "
                   "class) or .rec from xception-pack; with --labels-csv, the folder its paths "
                   "are under (default: the CSV's own)")
    p.add_argument("--labels-csv", metavar="FILE",
                   help="a multi-label classifier (Dense(k, sigmoid)) on the images of a CSV "
                        "of path,label;label;...: per-class precision, recall, F1 at "
                        "--threshold, and mean average precision")
    add_precision(p, "auto: the checkpoint's own (fp32 unless written by xception-quantize)")
    add_transform(p)
    p.add_argument("--labels", metavar="FILE", help="the model's class names, one per line "
                   "(default: PREFIX-labels.txt, or ImageNet's for 1000 classes)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (0: none)")
    add_epoch(p)
    p.add_argument("--keras", metavar="FILE", help="also run the Keras model the checkpoint was "
                   "converted from (Keras itself, safe_mode) on the same inputs: both "
                   "accuracies, their top-1 agreement, every image where it differs")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="with --keras: the share of images whose top-1 may differ before the "
                        "exit status is 1")
    p.add_argument("--compare", choices=PRECISIONS, metavar="PRECISION",
                   help="also run the checkpoint at this precision (fp32, bf16, int8) on the "
                        "same inputs: what the other precision costs")
    p.add_argument("--threshold", type=float, help="a binary classifier (one logit or sigmoid "
                   "unit): class 1 where its probability is at least this; a multi-label "
                   "one: each class where its probability is at least this (default 0.5)")
    p.add_argument("--all-classes", action="store_true",
                   help="score every class of the model in the table, its averages and the "
                        "matrix (default: the classes present, true or predicted)")
    p.add_argument("--report", metavar="JSON", help="write every score as JSON")
    p.add_argument("--out", metavar="DIR", help="write the CSVs and PNGs here")
    return p


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    parser.check_minimums(args, batch_size=1, workers=0)
    if not 0.0 <= args.tolerance <= 1.0:
        parser.error("--tolerance is a share of the images, in [0, 1]; got %g" % args.tolerance)
    if args.tolerance and not args.keras:
        parser.error("--tolerance goes with --keras")
    output_file(args.report, "--report")
    if args.labels_csv:
        return _multilabel(parser, args)
    if not args.data:
        parser.error("give DATA (a class folder or .rec) or --labels-csv FILE")
    output_folder(args.out, "--out")
    if not args.compare:
        one_precision_process()               # no bf16 after fp32: auto may cap fp32's kernels
    report = evaluate(args.prefix, args.data, args.precision, args.transform, args.batch_size,
                      args.workers, args.labels, args.epoch, args.keras, args.compare,
                      log=lambda line: print(line, file=sys.stderr), threshold=args.threshold,
                      all_classes=args.all_classes)
    print(format_table(report))
    if args.out:
        for path in write_files(report, args.out).values():
            print("wrote %s" % path)
    if args.report:
        write_report(report, args.report)
        print("wrote %s" % args.report)
    if args.keras and 1.0 - report["agreement"] > args.tolerance:
        print("FAIL: %d of %d images have another top-1 in Keras (--tolerance %g)" % (
            len(report["keras_disagreements"]), report["images"], args.tolerance))
        return 1
    return 0


def _multilabel(parser, args):
    if args.keras or args.compare or args.out or args.all_classes:
        parser.error("--labels-csv: --keras, --compare, --out and --all-classes score "
                     "single-label classifiers; --report writes the multi-label scores")
    report = evaluate_multilabel(args.prefix, args.labels_csv, args.data, args.precision,
                                 args.transform, args.batch_size, args.workers, args.labels,
                                 args.epoch, args.threshold)
    print(format_multilabel(report))
    if args.report:
        write_report(report, args.report)
        print("wrote %s" % args.report)
    return 0


def main(argv=None):
    return run(PROG, _main, argv)
