"""The scores of a classifier's probabilities against true classes: accuracy, loss,
per-class precision/recall/F1 (scikit-learn's), the confusion matrix, the most confused pairs
and the expected calibration error."""
import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

KERAS_EPSILON = 1e-7        # Keras clips probabilities so before its cross-entropy
CALIBRATION_BINS = 15


def top_k(probabilities, labels, k):
    """Fraction of rows whose true class is among the ``k`` most probable."""
    k = min(k, probabilities.shape[1])
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float((best == labels[:, None]).any(axis=1).mean())


def mean_loss(probabilities, labels):
    """Keras' sparse categorical cross-entropy of probabilities, averaged."""
    p = np.clip(probabilities[np.arange(len(labels)), labels], KERAS_EPSILON,
                1.0 - KERAS_EPSILON)
    return float(-np.log(p).mean())


def present_classes(labels, predicted):
    """The model classes that occur in the data, as true or predicted classes, in order: a
    class neither is scores 0 for its precision, recall and F1, which would only pull the
    averages down (a perfect model on 2 of 6 classes: macro F1 0.333)."""
    return sorted(set(np.asarray(labels).tolist()) | set(np.asarray(predicted).tolist()))


def per_class(labels, predicted, names, classes=None):
    """``({name: {precision, recall, f1, support}}, {"macro": ..., "weighted": ...})`` over
    ``classes`` (model class indices; default all of ``names``)."""
    classes = list(range(len(names))) if classes is None else list(classes)
    rows = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    table = {names[c]: {"precision": float(p), "recall": float(r), "f1": float(f),
                        "support": int(s)} for c, p, r, f, s in zip(classes, *rows)}
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                     average=average, zero_division=0)
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    return table, averages


def confusion(labels, predicted, classes):
    """Rows: true class, columns: predicted, in the order of ``classes`` (model class
    indices, or their count for all)."""
    classes = list(range(classes)) if isinstance(classes, int) else list(classes)
    return confusion_matrix(labels, predicted, labels=classes)


def most_confused_classes(matrix, limit):
    """Indices (into ``matrix``) of at most ``limit`` classes, those with the most errors
    (off-diagonal images, as true and as predicted class), in their order: what a confusion
    plot of many classes shows."""
    if len(matrix) <= limit:
        return list(range(len(matrix)))
    off = np.array(matrix, dtype=np.int64)
    np.fill_diagonal(off, 0)
    errors = off.sum(axis=0) + off.sum(axis=1)
    return sorted(np.argsort(-errors, kind="stable")[:limit].tolist())


def most_confused(matrix, names, count=10):
    """``[(true, predicted, images)]``, the largest off-diagonal counts first."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:count]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [(names[t], names[p], int(off[t, p])) for t, p in pairs if off[t, p] > 0]


def calibration(probabilities, labels, bins=CALIBRATION_BINS):
    """``(ece, [{low, high, images, confidence, accuracy}])``: the top-1 confidence in equal
    bins of [0, 1]; ECE = sum over bins of |accuracy - confidence| x share of images."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        chosen = which == b
        n = int(chosen.sum())
        row = {"low": float(edges[b]), "high": float(edges[b + 1]), "images": n,
               "confidence": float(confidence[chosen].mean()) if n else None,
               "accuracy": float(correct[chosen].mean()) if n else None}
        if n:
            ece += n / len(labels) * abs(row["accuracy"] - row["confidence"])
        rows.append(row)
    return float(ece), rows
