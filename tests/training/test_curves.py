"""``curves.png``: whole epochs on the axis, counted from 1 as every epoch of a run, and the
exported epoch marked (one epoch drew an axis from -0.04 to 0.04)."""
import matplotlib
import pytest

from xception_mx.training.run_dir import RunDirectory

matplotlib.use("Agg")


def rows(n):
    return [{"epoch": e, "train_loss": 1.0 / e, "train_top1": 0.5, "val_loss": 1.2 / e,
             "val_top1": 0.4, "val_topk": 0.9} for e in range(1, n + 1)]


@pytest.mark.parametrize("epochs, exported", [(1, 1), (3, 2), (12, 7)])
def test_curves_show_whole_epochs_and_mark_the_exported_one(epochs, exported, tmp_path,
                                                              monkeypatch):
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)     # keep the figure to look at it
    RunDirectory(str(tmp_path)).plot_curves(rows(epochs), "run", exported)
    assert (tmp_path / "curves.png").stat().st_size > 0
    for ax in figures[0].axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert low < 1 and high > epochs and high - low < epochs + 1.5
        marks = [line for line in ax.get_lines()
                 if line.get_label() == "exported (epoch %d)" % exported]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [exported, exported]
