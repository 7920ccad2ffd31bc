"""``xception-evaluate PREFIX --labels-csv FILE``: a multi-label classifier (a sigmoid per
class) on images labelled by a CSV (``images.labels_csv``): per class, precision, recall and
F1 of ``probability >= threshold`` (default 0.5) and the average precision of its
probabilities; their means over the classes the CSV names (mAP: the mean average
precision); scikit-learn's metrics."""
import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from xception_mx.errors import make_sure
from xception_mx.images.datasets import EvaluationImages
from xception_mx.images.labels_csv import LabelsCsvSource
from xception_mx.images.transforms import DEFAULT_TRANSFORM
from xception_mx.serving.runtime import Model

from .classes import display_names, model_names
from .run import score_images


def check_multilabel(model):
    classes = int(model.meta.num_classes or 0)
    make_sure(not model.outputs and model.kind == "scores" and classes > 1, "%s: its output is "
              "%s; --labels-csv scores multi-label classifiers (Dense(k, sigmoid), k > 1)",
              model.prefix, "several outputs" if model.outputs else "%s of %d units" % (
                  model.kind, classes))
    return classes


def evaluate_multilabel(prefix, labels_csv, root=None, precision="auto",
                        transform=DEFAULT_TRANSFORM, batch_size=32, workers=2, labels=None,
                        epoch=0, threshold=None):
    """The report of multi-label checkpoint ``prefix`` on the images ``labels_csv`` lists
    (under ``root``, default the CSV's folder)."""
    threshold = 0.5 if threshold is None else threshold
    make_sure(0 < threshold < 1, "--threshold must be in (0, 1), got %s", threshold)
    source = LabelsCsvSource(labels_csv, root)
    model = Model(prefix, precision, epoch, batch_size)
    classes = check_multilabel(model)
    shown = display_names(model_names(prefix, classes, labels), classes)
    unknown = [c for c in source.classes if c not in shown]
    make_sure(not unknown, "--labels-csv %s: labels %s are not among the model's classes (%s)",
              labels_csv, ", ".join(unknown[:3]), ", ".join(shown[:6]))
    dataset = EvaluationImages(source, model.input_size, None, transform,
                               model.meta.takes_raw_pixels, model.channels)
    raw, _, order, rate = score_images(dataset, {"model": lambda x: np.asarray(model.logits(x),
                                                                         np.float64)},
                              batch_size, workers)
    scored = [shown.index(c) for c in source.classes]       # the CSV's labels, model order
    truth = np.zeros((len(order), classes), np.int64)
    truth[:, scored] = source.hot[order]
    report = multilabel_scores(raw["model"], truth, shown, threshold, scored)
    report.update(checkpoint=str(prefix), data=str(labels_csv), precision=model.precision,
                  transform=transform, images_per_s=rate, images=len(order),
                  paths=[source.name(int(i)) for i in order])
    return report


def multilabel_scores(probabilities, truth, names, threshold, scored):
    """Per class of ``scored`` (model class indices) and their means: precision, recall, F1
    at ``threshold``, average precision; ``probabilities`` and multi-hot ``truth`` are
    (images, classes)."""
    predicted = (probabilities >= threshold).astype(np.int64)
    p, r, f1, support = precision_recall_fscore_support(
        truth[:, scored], predicted[:, scored], average=None, zero_division=0)
    ap = [average_precision_score(truth[:, c], probabilities[:, c]) if truth[:, c].any()
          else None for c in scored]
    per_class = [{"class": names[c], "precision": float(p[i]), "recall": float(r[i]),
                  "f1": float(f1[i]), "average_precision": ap[i], "support": int(support[i])}
                 for i, c in enumerate(scored)]
    present = [a for a in ap if a is not None]
    return {"multilabel": True, "threshold": threshold, "per_class": per_class,
            "macro_precision": float(np.mean(p)), "macro_recall": float(np.mean(r)),
            "macro_f1": float(np.mean(f1)),
            "mean_average_precision": float(np.mean(present)) if present else None,
            "exact_match": float((predicted[:, scored] == truth[:, scored]).all(axis=1).mean())}


def format_multilabel(report):
    """The table xception-evaluate prints for a multi-label classifier."""
    lines = ["%d images, threshold %g: mean average precision %.4f, macro F1 %.4f, exact "
             "match %.4f" % (report["images"], report["threshold"],
                             report["mean_average_precision"] or float("nan"),
                             report["macro_f1"], report["exact_match"]),
             "%-24s %9s %9s %9s %9s %8s" % ("class", "precision", "recall", "f1", "AP",
                                            "support")]
    for row in report["per_class"]:
        lines.append("%-24s %9.4f %9.4f %9.4f %9s %8d" % (
            row["class"][:24], row["precision"], row["recall"], row["f1"],
            "-" if row["average_precision"] is None else "%.4f" % row["average_precision"],
            row["support"]))
    return "\n".join(lines)
