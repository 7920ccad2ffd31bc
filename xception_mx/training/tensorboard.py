"""``xception-finetune --tensorboard DIR``: each epoch's losses, metrics and learning rate as
TensorBoard event files (written by tensorboardX), laid out as Keras' ``TensorBoard``
callback lays out ``fit``'s: ``DIR/train`` with ``epoch_loss``, ``epoch_accuracy``,
``epoch_top_k_categorical_accuracy`` and ``epoch_learning_rate``, ``DIR/validation`` with
the validation ones under the same names; the step is the epoch's number (from 1, as in
``metrics.csv``).
A resumed run appends to the same folders."""
import os

from xception_mx.training.run_dir import KERAS_COLUMNS

PROG = "xception-finetune"


class TensorBoardLog:
    """The two writers, and a call per epoch with the epoch's record."""

    def __init__(self, folder):
        from tensorboardX import SummaryWriter
        self.writers = {part: SummaryWriter(os.path.join(folder, part))
                        for part in ("train", "validation")}

    def epoch(self, row):
        for key, column in KERAS_COLUMNS.items():
            if row.get(key) is None or key in ("images_per_s", "seconds"):
                continue
            part = "validation" if column.startswith("val_") else "train"
            tag = "epoch_" + (column[len("val_"):] if part == "validation" else column)
            self.writers[part].add_scalar(tag, float(row[key]), row["epoch"])
        for writer in self.writers.values():
            writer.flush()

    def close(self):
        for writer in self.writers.values():
            writer.close()
