"""An evaluation's report: the JSON record, the CSVs and PNGs of ``--out``, the terminal
table."""
import csv
import os

import numpy as np

from xception_mx.atomic import atomic_path, write_text
from xception_mx.images.transforms import TRANSFORM_TEXT

from . import metrics

TOP_PAIRS = 10
MATRIX_CLASSES = 50          # a confusion plot of more classes shows the most confused ones


def build_report(probabilities, labels, names, paths, threshold=None, all_classes=False):
    """Every score of ``probabilities`` (N x classes) against ``labels`` (model classes),
    JSON-ready; ``names``: the model's class names, ``paths``: each image's; ``threshold``:
    a binary classifier's, class 1 where its probability reaches it (recorded).  The table,
    its averages and the confusion matrix cover the classes present (true or predicted;
    ``classes``), or with ``all_classes`` every class of the model."""
    predicted = probabilities.argmax(axis=1) if threshold is None else \
        (probabilities[:, 1] >= threshold).astype(np.int64)
    shown = list(range(len(names))) if all_classes else \
        metrics.present_classes(labels, predicted)
    table, averages = metrics.per_class(labels, predicted, names, shown)
    matrix = metrics.confusion(labels, predicted, shown)
    shown_names = [names[c] for c in shown]
    ece, bins = metrics.calibration(probabilities, labels)
    rows = np.arange(len(labels))
    wrong = np.flatnonzero(predicted != labels)
    k = min(5, len(names))
    return {
        "images": int(len(labels)), "classes": shown_names, "model_classes": len(names),
        "top1": metrics.top_k(probabilities, labels, 1) if threshold is None else
        float((predicted == labels).mean()),
        "top5": metrics.top_k(probabilities, labels, 5), "top_k": k,
        "loss": metrics.mean_loss(probabilities, labels),
        "per_class": table, "macro_avg": averages["macro"],
        "weighted_avg": averages["weighted"],
        "confusion_matrix": matrix.tolist(),
        "most_confused": [{"true": t, "predicted": p, "images": n}
                          for t, p, n in metrics.most_confused(matrix, shown_names,
                                                               TOP_PAIRS)],
        "ece": ece, "calibration": bins,
        "misclassified": [{"path": paths[i], "true": names[labels[i]],
                           "predicted": names[predicted[i]],
                           "probability": float(probabilities[i, predicted[i]]),
                           "true_probability": float(probabilities[rows[i], labels[i]])}
                          for i in wrong],
        **({} if threshold is None else {"threshold": threshold}),
    }


def format_table(report):
    """The short terminal summary."""
    shown, whole = len(report["classes"]), report.get("model_classes", len(report["classes"]))
    lines = ["%d images, %d classes%s: top-1 %.4f, top-%d %.4f, loss %.4f, ECE %.4f" % (
        report["images"], shown, "" if shown == whole else
        " (those present, true or predicted, of the model's %d; --all-classes for all)"
        % whole, report["top1"], report["top_k"], report["top5"], report["loss"],
        report["ece"])]
    if report.get("transform"):
        lines.append("images: %s" % TRANSFORM_TEXT.get(report["transform"],
                                                       report["transform"]))
    lines.append("%-24s %9s %9s %9s %8s" % ("class", "precision", "recall", "f1", "images"))
    for name, row in report["per_class"].items():
        lines.append("%-24s %9.4f %9.4f %9.4f %8d" % (name[:24], row["precision"],
                                                       row["recall"], row["f1"], row["support"]))
    for average in ("macro_avg", "weighted_avg"):
        row = report[average]
        lines.append("%-24s %9.4f %9.4f %9.4f %8d" % (average.replace("_", " "),
                                                       row["precision"], row["recall"],
                                                       row["f1"], report["images"]))
    if "keras" in report:
        lines.append("Keras: top-1 %.4f, top-%d %.4f; same top-1 on %.2f%% of the images (%d "
                     "differ); max |output difference| %.3g" % (
                         report["keras_top1"], report["top_k"], report["keras_top5"],
                         100 * report["agreement"], len(report["keras_disagreements"]),
                         report["max_abs_deviation"]))
    if "compare" in report:
        other = report["compare"]
        lines.append("%s: top-1 %.4f, top-%d %.4f; same top-1 as %s on %.2f%% of the images "
                     "(%d differ)" % (other["precision"], other["top1"], report["top_k"],
                                      other["top5"], report["precision"],
                                      100 * other["agreement"], len(other["disagreements"])))
    if report["most_confused"]:
        lines.append("most confused: " + "; ".join(
            "%s -> %s (%d)" % (p["true"], p["predicted"], p["images"])
            for p in report["most_confused"][:5]))
    return "\n".join(lines)


def _write_csv(path, header, rows):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_files(report, folder):
    """``confusion_matrix.csv``/``.png``, ``per_class.csv``, ``misclassified.csv`` and
    ``reliability.png`` in ``folder``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    names = report["classes"]
    paths = {name: os.path.join(folder, name) for name in (
        "confusion_matrix.csv", "confusion_matrix.png", "per_class.csv", "misclassified.csv",
        "reliability.png")}
    _write_csv(paths["confusion_matrix.csv"], ["true \\ predicted"] + names,
               [[n] + row for n, row in zip(names, report["confusion_matrix"])])
    _write_csv(paths["per_class.csv"], ["class", "precision", "recall", "f1", "support"],
               [[n, r["precision"], r["recall"], r["f1"], r["support"]]
                for n, r in report["per_class"].items()])
    _write_csv(paths["misclassified.csv"], ["path", "true", "predicted", "probability",
                                            "true_probability"],
               [[m["path"], m["true"], m["predicted"], m["probability"], m["true_probability"]]
                for m in report["misclassified"]])
    plot_confusion(np.array(report["confusion_matrix"]), names, paths["confusion_matrix.png"])
    plot_reliability(report, paths["reliability.png"])
    return paths


def _figure(width, height):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt, plt.subplots(figsize=(width, height))


def plot_confusion(matrix, names, path):
    """Row-normalised (each true class sums to 1), class names on both axes, the images of
    each cell written in it up to 20 classes; past ``MATRIX_CLASSES`` classes the most
    confused of them (``metrics.most_confused_classes``)."""
    title = "confusion matrix (rows: true class, normalised; cells: images)"
    if len(names) > MATRIX_CLASSES:
        keep = metrics.most_confused_classes(matrix, MATRIX_CLASSES)
        title = "the %d most confused of %d classes (rows: true, normalised)" % (
            len(keep), len(names))
        matrix, names = matrix[np.ix_(keep, keep)], [names[k] for k in keep]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    side = min(max(6.0, 0.18 * len(names) + 2.0), 40.0)
    plt, (fig, ax) = _figure(side, side)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    font = max(4.0, min(10.0, 500.0 / max(len(names), 1)))
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=font)
    ax.set_yticks(range(len(names)), names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 20:
        for (t, p), value in np.ndenumerate(share):
            if matrix[t, p]:
                ax.text(p, t, "%d\n%.2f" % (matrix[t, p], value), ha="center", va="center",
                        fontsize=font, color="white" if value > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_reliability(report, path):
    """Accuracy against confidence per bin, the diagonal, and the ECE."""
    plt, (fig, ax) = _figure(6, 6)
    filled = [b for b in report["calibration"] if b["images"]]
    centres = [(b["low"] + b["high"]) / 2 for b in filled]
    width = filled[0]["high"] - filled[0]["low"] if filled else 0.1
    ax.bar(centres, [b["accuracy"] for b in filled], width=width, edgecolor="black",
           label="accuracy")
    for centre, b in zip(centres, filled):     # every filled bin shows its images, 0 too
        if b["accuracy"] == 0:
            ax.hlines(0.004, centre - width / 2, centre + width / 2, color="red", lw=2)
        ax.annotate("%d" % b["images"], (centre, b["accuracy"]), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=7)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.plot(centres, [b["confidence"] for b in filled], "ro", label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability (ECE %.4f, %d images; above each bin: its images)"
                 % (report["ece"], report["images"]))
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_report(report, path):
    import json
    write_text(path, json.dumps(report, indent=1) + "\n")
