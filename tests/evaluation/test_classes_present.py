"""Evaluating on some of a model's classes: the table, its averages and the matrix cover the
classes present, true or predicted (scikit-learn's scores over those labels), unless all are
asked for; a confusion plot past 50 classes shows the most confused ones, with counts."""
import matplotlib
import numpy as np
import pytest
from sklearn.metrics import f1_score

from xception_mx.evaluation import metrics
from xception_mx.evaluation.report import build_report, format_table, plot_confusion

matplotlib.use("Agg")
NAMES = ["fork", "knife", "spoon", "cup", "plate", "bowl"]


def one_hot(predicted, classes=6):
    return np.eye(classes)[predicted] * 0.9 + 0.1 / classes


def test_a_perfect_model_on_two_of_six_classes_scores_one_not_a_third():
    labels = np.array([1, 1, 4, 4, 4])
    report = build_report(one_hot(labels), labels, NAMES, ["x"] * 5)
    assert report["classes"] == ["knife", "plate"] and report["model_classes"] == 6
    assert report["macro_avg"]["f1"] == 1.0 and list(report["per_class"]) == report["classes"]
    assert report["confusion_matrix"] == [[2, 0], [0, 3]]
    assert "2 classes (those present, true or predicted, of the model's 6" in \
        format_table(report)
    every = build_report(one_hot(labels), labels, NAMES, ["x"] * 5, all_classes=True)
    assert every["classes"] == NAMES and every["macro_avg"]["f1"] == pytest.approx(2 / 6)
    assert len(format_table(every).splitlines()) == len(format_table(report).splitlines()) + 4


def test_a_class_only_predicted_is_present_and_scored_as_sklearn_scores_it():
    labels, predicted = np.array([1, 1, 4, 4]), np.array([1, 2, 4, 4])
    report = build_report(one_hot(predicted), labels, NAMES, ["x"] * 4)
    assert report["classes"] == ["knife", "spoon", "plate"]
    assert report["macro_avg"]["f1"] == pytest.approx(
        f1_score(labels, predicted, labels=[1, 2, 4], average="macro", zero_division=0))
    assert report["per_class"]["spoon"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                            "support": 0}


def test_a_matrix_of_many_classes_is_drawn_for_its_most_confused(tmp_path, monkeypatch):
    rng = np.random.RandomState(0)
    matrix = np.diag(rng.randint(5, 9, 80))
    confused = [3, 17, 42, 64, 79]
    for a, b in zip(confused, confused[1:]):
        matrix[a, b] = 4
    assert set(confused) <= set(metrics.most_confused_classes(matrix, 50))
    assert metrics.most_confused_classes(matrix[:10, :10], 50) == list(range(10))
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_confusion(matrix, ["c%d" % i for i in range(80)], str(tmp_path / "m.png"))
    ax = figures[0].axes[0]
    assert len(ax.get_xticklabels()) == 50 and "50 most confused of 80" in ax.get_title()
    small = np.array([[5, 1], [0, 3]])
    plot_confusion(small, ["a", "b"], str(tmp_path / "s.png"))
    texts = sorted(t.get_text() for t in figures[1].axes[0].texts)
    assert texts == ["1\n0.17", "3\n1.00", "5\n0.83"]
