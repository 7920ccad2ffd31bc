"""An epoch's end in a fine-tuning run (``finetune.train_epochs``): validate, log, keep the
best epoch, apply Keras' callbacks, and on rank 0 write the epoch's checkpoint, the best
record, the history, TensorBoard's events and the curves."""
import os

from xception_mx.faults import fault_point
from xception_mx.training.callbacks import early_stopping, reduce_on_plateau
from xception_mx.training.train import Counts, evaluate

PROG = "xception-finetune"          # finetune.PROG too


def _fmt(counts, names):
    return "loss %.4f %s %.3f %s %.3f" % (counts.loss, names[0], counts.top1, names[1],
                                         counts.topk)


def end_epoch(run, epoch, row):
    """Validate, log, keep the best epoch, and (rank 0) write the epoch's checkpoint, the
    best record, the history and the curves (``epoch``: its number, from 1)."""
    data, config, k = run.data, run.config, min(5, run.num_classes)
    names = ("binary accuracy", "exact match") if data.multilabel else ("top-1", "top-%d" % k)
    train_counts = Counts(row["train_loss"], row["train_top1"], row["train_topk"], 0)
    line = "epoch %d: train %s" % (epoch, _fmt(train_counts, names))
    if data.val_loader is not None:
        val = evaluate(run.net, data.val_loader, run.val_loss_fn, run.contexts, k,
                       run.regularization)
        row.update(val_loss=val.loss, val_top1=val.top1, val_topk=val.topk)
        line += " | val %s" % _fmt(val, names)
    run.log(line)
    run.history.append(row)
    score = row.get("val_top1", row["train_top1"])
    if run.best is None or score > run.best["score"]:
        run.best = {"epoch": epoch, "score": score}
    keras_callbacks(run, epoch - 1, row)
    if not run.lead:
        return
    run_dir = run.run_dir
    run_dir.save_epoch(epoch, run.net, run.trainer, {
        "epoch": epoch, "metrics": row, "config": config, "classes": data.classes,
        "history": run.history, "best": run.best, "workers": run.workers,
        "callbacks": run.callbacks}, run.shapes)
    fault_point("epoch-%d:checkpoint-written" % epoch)
    run_dir.write_best(run.best["epoch"], run.history[run.best["epoch"] - 1])
    run_dir.prune(run.best["epoch"])
    run_dir.write_csv(run.history)
    if run.tensorboard:
        run.tensorboard.epoch(row)
    run_dir.plot_curves(run.history, "%s: %s" % (PROG, os.path.basename(
        os.path.abspath(config["out"]))), run.best["epoch"])  # the run's name, not its path


def keras_callbacks(run, epoch, row):
    """Early stopping (its best epoch the run's best, the export) and the learning rate on a
    plateau, on this epoch's validation loss (``training.callbacks``, which count epochs
    from 0 as Keras' callbacks do: ``epoch``)."""
    config, state = run.config, run.callbacks
    if config.get("early_stopping") is not None:
        run.stopped = early_stopping(state["stopping"], config["early_stopping"], epoch,
                                     row["val_loss"])
        best = state["stopping"]["best_epoch"]
        run.best = {"epoch": best + 1, "score": run.history[best]["val_top1"]}
    if config.get("reduce_lr_on_plateau"):
        lr = reduce_on_plateau(state["plateau"], *config["reduce_lr_on_plateau"],
                               val_loss=row["val_loss"], lr=row["lr"])
        if lr != row["lr"]:
            run.log("epoch %d: the validation loss is on a plateau; learning rate %g from "
                    "now on" % (epoch + 1, lr))
