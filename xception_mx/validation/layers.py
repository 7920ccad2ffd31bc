"""Layer-by-layer comparison: every Keras layer output against the MXNet internal output
of the same layer (paired by ``keras_side.pairing``), to find where a conversion starts to
differ; the table and the plot.
"""
import collections

import numpy as np

from xception_mx.atomic import atomic_path

from xception_mx.progress import progress

from .metrics import max_deviation, max_magnitude

LayerRecord = collections.namedtuple(
    "LayerRecord", "depth keras_layer mxnet_output shape max_abs max_ref scaled")
LayerRecord.__doc__ = """One layer: depth in ``model.layers``, names on both
sides, output shape (Keras, NHWC), max |keras - mxnet|, max |keras|, and the
deviation scaled by ``max(1, max |keras|)`` (what the tolerance applies to)."""


def _to_nhwc(array):
    return np.transpose(array, (0, 2, 3, 1)) if array.ndim == 4 else array


def compare_layers(pairs, keras_run, mx_internals, x, batch_size=4):
    """Run both models layer by layer over ``x`` (NCHW) and return one
    ``LayerRecord`` per pair, deviations maximised over the batch.

    ``keras_run(nhwc) -> [output of each pair's Keras layer]``;
    ``mx_internals(batch) -> {mxnet output name: NDArray-like numpy}``.
    """
    max_abs = np.zeros(len(pairs))
    max_ref = np.zeros(len(pairs))
    shapes = [None] * len(pairs)
    with progress(total=len(x), desc="layers", step=batch_size) as bar:
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            keras_outs = keras_run(np.ascontiguousarray(np.transpose(batch, (0, 2, 3, 1))))
            mx_outs = mx_internals(batch)
            for i, ((_, _, mx_name), k) in enumerate(zip(pairs, keras_outs)):
                m = _to_nhwc(mx_outs[mx_name]).reshape(k.shape)
                max_abs[i] = max(max_abs[i], max_deviation(k, m))
                max_ref[i] = max(max_ref[i], max_magnitude(k))
                shapes[i] = list(k.shape[1:])
            bar.update(len(batch))
    return [LayerRecord(depth, name, mx_name, shape, float(a), float(r), float(a / max(1.0, r)))
            for (depth, name, mx_name), shape, a, r in zip(pairs, shapes, max_abs, max_ref)]


def first_divergent(records, atol):
    """The first layer whose scaled deviation exceeds ``atol``, or ``None``."""
    return next((r for r in records if r.scaled > atol), None)


def format_layers(records, atol):
    width = max(len(r.keras_layer) for r in records)
    lines = ["%5s  %-*s  %-18s  %11s  %11s" % ("depth", width, "keras_layer", "shape",
                                             "max_abs", "scaled")]
    for r in records:
        flag = "  <-- first above tolerance" if r is first_divergent(records, atol) else ""
        lines.append("%5d  %-*s  %-18s  %11.3e  %11.3e%s" % (
            r.depth, width, r.keras_layer, "x".join(map(str, r.shape)), r.max_abs, r.scaled,
            flag))
    worst = first_divergent(records, atol)
    lines.append("first layer above tolerance (%.1e, deviation / max(1, max|keras|)): %s" % (
        atol, "none" if worst is None else "%s (depth %d)" % (worst.keras_layer, worst.depth)))
    return "\n".join(lines)


def plot_layers(records, atol, path, title="Keras vs MXNet, per layer"):
    """Deviation against depth on a log scale, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    depths = [r.depth for r in records]
    finite = [v for r in records for v in (r.max_abs, r.scaled) if np.isfinite(v)]
    ceiling = max(finite + [1.0]) * 10      # where non-finite deviations are drawn

    def shown(value):
        return ceiling if not np.isfinite(value) else max(value, 1e-9)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    ax.semilogy(depths, [shown(r.max_abs) for r in records], ".-", lw=1,
                label="max |keras - mxnet|")
    ax.semilogy(depths, [shown(r.scaled) for r in records], "s--", ms=4, lw=1, alpha=0.8,
                label="scaled by max(1, max|keras|)")
    broken = [r.depth for r in records if not np.isfinite(r.max_abs)]
    if broken:
        ax.semilogy(broken, [ceiling] * len(broken), "x", color="red", ms=8,
                    label="NaN/inf (drawn at the top)")
    ax.axhline(atol, color="red", ls="--", lw=1, label="tolerance %.0e" % atol)
    worst = first_divergent(records, atol)
    if worst is not None:
        ax.axvline(worst.depth, color="orange", lw=1)
        ax.annotate(worst.keras_layer, (worst.depth, shown(worst.scaled)),
                    textcoords="offset points", xytext=(5, -12), color="darkorange")
    ax.set_xlabel("layer depth (position in the Keras model)")
    ax.set_ylabel("max deviation")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
