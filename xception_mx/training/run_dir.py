"""A fine-tuning run's folder: per-epoch checkpoints, resume, metrics CSV, curves.

Layout of ``OUT/``::

    epoch-0003.params   parameters after the third epoch (names as in the network, BN
                        statistics averaged); epochs count from 1 everywhere
    epoch-0003.states   trainer (optimizer) states
    epoch-0003.json     epoch, metrics, full configuration, sha256 of the two files
    best.json           which epoch has the best validation top-1
    metrics.csv         one row per epoch, in the columns of Keras' CSVLogger
    curves.png          loss and accuracy curves
    model-symbol.json, model-0000.params, model-meta.json, model-labels.txt
                        the export of the best epoch, in keras2mxnet's format

Each file is written under a temporary name and renamed; the epoch's JSON comes
last and records the sha256 of its params and states, so a run killed while
writing leaves either a complete, verifiable epoch or none.  Only the last two
epochs and the best one are kept.
"""
import csv
import glob
import io
import json
import os
import re

import mxnet as mx

from xception_mx.atomic import atomic_path, sha256_file, write_text
from xception_mx.errors import InputError, make_sure, mxnet_error_text
from xception_mx.faults import fault_point

EPOCH_JSON = re.compile(r"epoch-(\d{4})\.json$")
KEEP_LAST = 2
# metrics.csv in the columns of Keras' CSVLogger: "epoch" (from 1, as every epoch number of a
# run; CSVLogger's counts from 0), then fit's logs' keys in sorted order, named as Keras names
# them (its "accuracy" and "top_k_categorical_accuracy" metrics, the "learning_rate" its
# schedulers log); the epoch record's name -> the column
KERAS_COLUMNS = {"train_top1": "accuracy", "images_per_s": "images_per_s",
                 "lr": "learning_rate", "train_loss": "loss", "seconds": "seconds",
                 "train_topk": "top_k_categorical_accuracy", "val_top1": "val_accuracy",
                 "val_loss": "val_loss", "val_topk": "val_top_k_categorical_accuracy"}
CSV_FIELDS = ["epoch"] + sorted(KERAS_COLUMNS.values())


class RunDirectory:
    def __init__(self, path):
        self.path = path

    def file(self, name):
        return os.path.join(self.path, name)

    def epoch_file(self, epoch, suffix):
        return self.file("epoch-%04d.%s" % (epoch, suffix))

    def complete_epochs(self):
        """Epochs whose JSON exists and whose files match the recorded sha256,
        newest first, as ``(epoch, record)``."""
        found = []
        for path in glob.glob(self.file("epoch-*.json")):
            match = EPOCH_JSON.search(path)
            if not match:
                continue
            try:
                with open(path) as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            epoch = int(match.group(1))
            files_ok = all(os.path.isfile(self.epoch_file(epoch, s))
                           and sha256_file(self.epoch_file(epoch, s)) == record["sha256"][s]
                           for s in ("params", "states"))
            if files_ok:
                found.append((epoch, record))
        return sorted(found, key=lambda item: -item[0])

    def remove_stale_temps(self):
        """Delete temporary files a killed run left behind."""
        for path in glob.glob(self.file(".*.tmp*")):
            os.unlink(path)

    def has_checkpoints(self):
        return bool(glob.glob(self.file("epoch-*.json")))

    def save_epoch(self, epoch, net, trainer, record, shapes):
        """Write params, states (in Keras' shapes: ``shapes`` is the network's
        padded_training.ShapeMap), then the JSON that makes the epoch complete."""
        fault_point("epoch-%d:checkpoint-started" % epoch)
        try:
            os.makedirs(self.path, exist_ok=True)
            with atomic_path(self.epoch_file(epoch, "params")) as params_tmp, \
                    atomic_path(self.epoch_file(epoch, "states")) as states_tmp:
                shapes.save_params(net, params_tmp)
                shapes.save_states(trainer, states_tmp)
                record = dict(record, sha256={"params": sha256_file(params_tmp),
                                              "states": sha256_file(states_tmp)})
                _fault_pause(epoch)
            write_text(self.epoch_file(epoch, "json"), json.dumps(record, indent=1) + "\n")
        except (OSError, mx.base.MXNetError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
                mxnet_error_text(exc)
            raise InputError("%s: cannot write the checkpoint of epoch %d (%s); the last "
                             "complete one stays usable with --resume"
                             % (self.path, epoch, detail))
        return record

    def prune(self, best_epoch):
        """Remove epochs other than the last ``KEEP_LAST`` and the best."""
        epochs = sorted(int(EPOCH_JSON.search(p).group(1))
                        for p in glob.glob(self.file("epoch-*.json")) if EPOCH_JSON.search(p))
        for epoch in epochs[:-KEEP_LAST]:
            if epoch == best_epoch:
                continue
            for suffix in ("json", "params", "states"):
                if os.path.exists(self.epoch_file(epoch, suffix)):
                    os.unlink(self.epoch_file(epoch, suffix))

    def write_best(self, epoch, metrics):
        write_text(self.file("best.json"),
                   json.dumps({"epoch": epoch, "metrics": metrics}, indent=1) + "\n")

    def write_csv(self, rows):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(dict({column: row.get(key) for key, column in KERAS_COLUMNS.items()},
                                 epoch=row["epoch"]))
        write_text(self.file("metrics.csv"), buffer.getvalue())

    def plot_curves(self, rows, title, exported=None):
        """Loss and accuracy per epoch, train and validation, as ``curves.png``: whole epochs
        on the axis, the ``exported`` one marked."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
        epochs = [r["epoch"] for r in rows]
        has_val = all("val_loss" in r for r in rows)
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
        ax_acc.plot(epochs, [r["train_top1"] for r in rows], "o-", label="train top-1")
        if has_val:
            ax_loss.plot(epochs, [r["val_loss"] for r in rows], "s-", label="validation")
            ax_acc.plot(epochs, [r["val_top1"] for r in rows], "s-", label="validation top-1")
            ax_acc.plot(epochs, [r["val_topk"] for r in rows], "^--", label="validation top-k")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("cross-entropy loss")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_ylim(0, 1.02)
        for ax in (ax_loss, ax_acc):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
            if exported is not None:
                ax.axvline(exported, color="green", ls=":", lw=1.5,
                           label="exported (epoch %d)" % exported)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_path(self.file("curves.png")) as tmp:
            fig.savefig(tmp)
        plt.close(fig)


def _fault_pause(epoch):
    """Fault injection for tests: ``XCEPTION_MX_FAULT_PAUSE=EPOCH:SECONDS`` sleeps
    while that epoch's files are written under temporary names, not yet renamed."""
    setting = os.environ.get("XCEPTION_MX_FAULT_PAUSE", "")
    if setting.partition(":")[0] == str(epoch):
        import time
        time.sleep(float(setting.partition(":")[2]))


SETTINGS_BEFORE_THEY_WERE_RECORDED = {     # a run of 0.2.0 resumes
    "channels": 3, "nesterov": False, "weight_decay": None, "beta1": None, "beta2": None,
    "epsilon": None, "trainable_from": None, "pipeline_augmentation": "auto",
    # 0.3.0: the file's recipe, with a run from a checkpoint that records none
    "recipe": "file", "keras_schedule": None, "label_smoothing": None, "rho": None,
    "centered": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
    "regularizers": "file", "class_weight": None, "early_stopping": None,
    "reduce_lr_on_plateau": None, "labels_csv": None,
    "loss": {"class_name": "SparseCategoricalCrossentropy", "label_smoothing": 0.0}}
UNSET_IS_FALSE = ("nesterov", "centered")      # --no-nesterov: recorded False, unset None
NOT_COMPARED = ("recipe_line", "tensorboard")


def _setting(config, key):
    value = config.get(key)
    return False if key in UNSET_IS_FALSE and value is None else value


def check_resumable_config(saved, current,
                           ignore=("epochs", "resume", "workers", "out", "stop_after",
                                   "channel_padding") + NOT_COMPARED):
    """Resuming needs the same settings but for the number of epochs and the like
    (checkpoints hold Keras' shapes: a run resumes padded or not)."""
    saved = dict(SETTINGS_BEFORE_THEY_WERE_RECORDED, **saved)
    differing = sorted(k for k in set(saved) | set(current)
                       if k not in ignore and _setting(saved, k) != _setting(current, k))
    if differing:
        key = differing[0]
        raise InputError("--resume: the run in this folder used %s=%r, now %r (%d settings "
                         "differ: %s)" % (key, saved.get(key), current.get(key), len(differing),
                                          ", ".join(differing)))


def renumber_from_zero(run_dir):
    """Give the epochs of a run folder of xception-mx 0.2, which counted them from 0 (its
    ``epoch-000N`` held N + 1 epochs), today's numbers: files renamed, the newest first, and
    records renumbered (their sha256 stand: the files' contents do not change)."""
    for epoch, record in run_dir.complete_epochs():             # newest first
        history = record["history"]
        if not history or history[0]["epoch"] != 0:
            continue
        for suffix in ("params", "states"):
            os.replace(run_dir.epoch_file(epoch, suffix), run_dir.epoch_file(epoch + 1, suffix))
        record = dict(record, epoch=epoch + 1, best=dict(record["best"],
                                                         epoch=record["best"]["epoch"] + 1),
                      history=[dict(row, epoch=row["epoch"] + 1) for row in history])
        write_text(run_dir.epoch_file(epoch + 1, "json"), json.dumps(record, indent=1) + "\n")
        os.unlink(run_dir.epoch_file(epoch, "json"))


def resume_point(run_dir, config, lead=True):
    """``(epoch, record)`` to resume from (the number in its files' names), ``None`` for a
    fresh run."""
    if not config["resume"]:
        make_sure(not run_dir.has_checkpoints(), "%s: holds checkpoints of an earlier run; "
                  "pass --resume to continue it or choose another --out", run_dir.path)
        return None
    if lead:
        run_dir.remove_stale_temps()
        renumber_from_zero(run_dir)
    complete = run_dir.complete_epochs()
    if not complete:
        return None
    epoch, record = complete[0]
    check_resumable_config(record["config"], config)
    return epoch, record
