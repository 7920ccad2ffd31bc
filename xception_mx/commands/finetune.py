"""``xception-finetune``: train a converted Xception on new data (``training.finetune``),
then export its best epoch and score the export on the validation images as
``xception-evaluate`` would."""
import argparse

from xception_mx.commands.arguments import add_channel_padding
from xception_mx.commands.runner import Parser, run
from xception_mx.evaluation.report import write_files, write_report
from xception_mx.evaluation.run import evaluate
from xception_mx.training.export import EXPORT_NAME, export_best
from xception_mx.training.finetune import PROG, run_finetune
from xception_mx.training.recipe.optimizers import OPTIMIZER_NAMES
from xception_mx.training.recipe.resolve import LR_SCHEDULES, RECIPES, TRAINING_LOSSES
from xception_mx.training.run_setup import PIPELINE_AUGMENTATION, config_from_args


def build_parser():
    p = Parser(prog=PROG, description="Fine-tune an Xception checkpoint (from keras2mxnet or "
               "an earlier run) on an image folder or RecordIO data, on one CPU, several CPU "
               "contexts or several GPUs.")
    for add in (_data_arguments, _run_arguments, _optimizer_arguments, _schedule_arguments,
                _callback_arguments, _freezing_arguments, _device_arguments,
                _process_arguments):
        add(p)
    return p


def _data_arguments(p):
    """The data, the run folder and the checkpoint to start from."""
    p.add_argument("train", metavar="TRAIN", nargs="?",
                   help="image folder (one subfolder per class) or .rec file written by "
                        "xception-pack; with --labels-csv, the folder its paths are under "
                        "(default: the CSV's own)")
    p.add_argument("--labels-csv", metavar="FILE",
                   help="multi-label training: a CSV of path,label;label;... per image, for a "
                        "model whose head ends in Dense(k, sigmoid)")
    p.add_argument("--val", metavar="VAL", help="validation folder or .rec (with --labels-csv: "
                   "a labels CSV)")
    p.add_argument("--val-split", type=float, default=0.0,
                   help="hold out this fraction of TRAIN per class for validation")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, export)")
    p.add_argument("--pretrained", metavar="PREFIX", help="checkpoint to start from "
                   "(default: from scratch)")
    p.add_argument("--pretrained-epoch", type=int, default=0,
                   help="which PREFIX-%%04d.params of --pretrained")
    p.add_argument("--num-classes", type=int, help="classes of the new head (default: of the "
                   "data); the head is kept when the checkpoint has as many")
    p.add_argument("--input-shape", nargs=2, type=int, metavar=("H", "W"),
                   help="training input size (default: the --pretrained checkpoint's, else "
                        "299 299)")


def _run_arguments(p):
    """How long and how big."""
    p.add_argument("--epochs", type=int, default=10, help="epochs of the whole run")
    p.add_argument("--batch-size", type=int, default=32, help="global batch over all devices")


def _optimizer_arguments(p):
    """The recipe: the optimizer and its settings (``training.recipe``); unset, each part
    comes from the Keras file's recipe, else from this toolkit's defaults."""
    p.add_argument("--recipe", choices=RECIPES, default="file",
                   help="file: train with the optimizer, learning rate, schedule and loss the "
                        "Keras file was compiled with (each flag below replaces its part); "
                        "default: ignore it (nag, --lr 0.01, cosine decay, cross-entropy)")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES,
                   help="MXNet's sgd, nag (Nesterov momentum SGD), adam; or Keras' SGD, Adam, "
                        "AdamW, RMSprop, Nadam with Keras' formulas, unset settings as Keras "
                        "sets them (keras-sgd ... keras-nadam; see docs/finetune.md, Training "
                        "as in Keras); default: the file's, else nag")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the file's, its "
                   "schedule scaled to this peak; else 0.01)")
    p.add_argument("--momentum", type=float, help="for sgd and nag (default 0.9), keras-sgd "
                   "and keras-rmsprop (default 0, Keras')")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                   help="keras-sgd: Nesterov momentum")
    p.add_argument("--wd", type=float, help="MXNet's weight decay (coupled L2: added to the "
                   "gradient) of sgd, nag and adam (default 1e-4)")
    p.add_argument("--weight-decay", type=float, help="Keras' decoupled weight decay of "
                   "Keras' optimizers (default none; keras-adamw 0.004): w -= lr * "
                   "weight_decay * w before each step")
    p.add_argument("--beta1", type=float, help="keras-adam(w), keras-nadam: beta_1 (0.9)")
    p.add_argument("--beta2", type=float, help="keras-adam(w), keras-nadam: beta_2 (0.999)")
    p.add_argument("--epsilon", type=float, help="keras-adam(w), keras-nadam, keras-rmsprop: "
                   "epsilon (default 1e-7, Keras')")
    p.add_argument("--rho", type=float, help="keras-rmsprop's rho (default 0.9)")
    p.add_argument("--centered", action=argparse.BooleanOptionalAction,
                   help="keras-rmsprop: centered")
    for flag, what in (("--clipnorm", "each gradient to this L2 norm"),
                       ("--global-clipnorm", "all gradients together to this L2 norm"),
                       ("--clipvalue", "each gradient element to [-v, v]")):
        p.add_argument(flag, type=float, help="Keras' optimizers: clip %s, as Keras' %s" % (
            what, flag[2:].replace("-", "_")))
    p.add_argument("--class-weight", metavar="balanced|FILE.json",
                   help="weight each training image's loss by its class, as Keras' "
                        "fit(class_weight=...): balanced (n / (classes * count)) or a JSON "
                        "file {\"class name\": weight}")
    p.add_argument("--regularizers", choices=("file", "none"), default="file",
                   help="file: the Keras file's kernel, bias, depthwise, pointwise and activity "
                        "regularizers add to the loss as in Keras; none: they do not")
    p.add_argument("--loss", choices=TRAINING_LOSSES, help="default: the file's, else "
                   "sparse categorical cross-entropy on the logits")
    p.add_argument("--label-smoothing", type=float, help="categorical cross-entropy toward "
                   "y * (1 - s) + s / classes, as Keras' label_smoothing")


def _schedule_arguments(p):
    """The learning-rate schedule."""
    p.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear warmup from 0 to --lr over this many epochs")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="cosine: decay to 0 at the last epoch; step: times --lr-factor at "
                        "each --lr-steps epoch; constant (default: the file's schedule, else "
                        "cosine)")
    p.add_argument("--lr-steps", default="", help="epochs of the step decay, e.g. 30,60")
    p.add_argument("--lr-factor", type=float, default=0.1, help="step decay factor")


def _callback_arguments(p):
    """Keras' fit callbacks on the validation loss (``training.callbacks``)."""
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a lower validation loss and export "
                        "the best epoch, as Keras' EarlyStopping(monitor='val_loss', "
                        "restore_best_weights=True)")
    p.add_argument("--reduce-lr-on-plateau", metavar="FACTOR,PATIENCE",
                   help="multiply the (constant) learning rate by FACTOR after PATIENCE epochs "
                        "without a lower validation loss, as Keras' ReduceLROnPlateau")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard event files of each epoch's losses, metrics "
                        "and learning rate, in DIR/train and DIR/validation as Keras' "
                        "TensorBoard callback writes them")


def _freezing_arguments(p):
    """What trains, and the data pipeline's augmentation."""
    p.add_argument("--freeze-base-epochs", type=int, default=0,
                   help="train only the head for the first N epochs")
    p.add_argument("--trainable-from", metavar="LAYER",
                   help="train only this Keras layer and those after it (e.g. "
                        "block13_sepconv1); the layers the Keras file saved non-trainable stay "
                        "frozen in any case")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm statistics frozen (inference mode) throughout")
    p.add_argument("--min-crop", type=float, default=0.08,
                   help="smallest area fraction of the random resized crop")
    p.add_argument("--pipeline-augmentation", choices=PIPELINE_AUGMENTATION, default="auto",
                   help="the data pipeline's random resized crop and flip: auto (on unless "
                        "the model brings its own augmentation layers, which then act "
                        "alone), on, off (the centre crop of validation)")


def _device_arguments(p):
    """Devices, the job and padding."""
    devices = p.add_mutually_exclusive_group()
    devices.add_argument("--gpus", help="GPUs, e.g. 0,1,2,3")
    devices.add_argument("--cpus", type=int, help="N CPU contexts (data-parallel harness)")
    p.add_argument("--kvstore", "--kv-store",
                   choices=("device", "local", "dist_sync", "dist_device_sync", "horovod"),
                   default="device", help="dist_*: one worker of a parameter-server job "
                   "started by xception-launch; horovod: one worker of a job started by "
                   "horovodrun (one device per process)")
    p.add_argument("--amp", action="store_true", help="mixed precision (GPUs only)")
    add_channel_padding(p, help="train with channel counts padded to oneDNN's block of 16 (728 "
                        "-> 736; the same function, checkpoints keep Keras' shapes); auto: on "
                        "CPUs with AVX-512, where it is faster")


def _process_arguments(p):
    """Decoding, seeds, resume."""
    p.add_argument("--workers", type=int, default=2, help="decoding processes (0: none)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds sample order, crops, flips and a new head")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last complete checkpoint in --out")
    p.add_argument("--stop-after", type=int, metavar="EPOCH",
                   help="stop cleanly after this epoch (counted from 1, as the bar and "
                        "the files count) and its checkpoint; continue with --resume")


def evaluate_export(run):
    """The export scored on the run's validation images as ``xception-evaluate`` scores it
    (its transform: validation's centre crop): ``evaluation.json`` and the CSVs and PNGs in
    ``evaluation/`` of the run folder.  Returns the report."""
    run_dir, config = run.run_dir, run.config
    report = evaluate(run_dir.file(EXPORT_NAME), run.data.val_set.source, transform="crop",
                      batch_size=config["batch_size"], workers=config["workers"], log=run.log,
                      indices=run.data.val_set.indices)
    write_report(report, run_dir.file("evaluation.json"))
    write_files(report, run_dir.file("evaluation"))
    return report


def export(run):
    """The best epoch as ``OUT/model``, scored on the validation images when there are any."""
    export_best(run.run_dir, run.best["epoch"], run.num_classes, run.config, run.data.classes,
                run.history, run.export_spec, run.frozen, run.source, run.recipe,
                run.batchnorm, run.regularizers)
    if run.data.val_set is None or run.data.multilabel:
        return
    report = evaluate_export(run)
    run.log("%s: the export on the %d validation images: top-1 %.4f, top-%d %.4f, loss "
            "%.4f, ECE %.4f; per class and confusion matrix in %s, %s" % (
                PROG, report["images"], report["top1"], report["top_k"], report["top5"],
                report["loss"], report["ece"], run.run_dir.file("evaluation.json"),
                run.run_dir.file("evaluation")))


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.train or args.labels_csv):
        parser.error("give TRAIN (a class folder or .rec) or --labels-csv FILE")
    finetuning = run_finetune(config_from_args(args))
    if not finetuning.finished:                    # --stop-after: --resume continues it
        return 0
    if finetuning.lead:
        export(finetuning)
    best, run_dir = finetuning.best, finetuning.run_dir
    scored_on = "validation" if finetuning.data.val_loader is not None else \
        "training (no validation data: --val or --val-split)"
    finetuning.log("best epoch %d (%s top-1 %.3f); exported %s-symbol.json, -0000.params, "
                   "-labels.txt; curves %s" % (best["epoch"], scored_on, best["score"],
                                               run_dir.file(EXPORT_NAME),
                                               run_dir.file("curves.png")))
    return 0


def main(argv=None):
    return run(PROG, _main, argv)
