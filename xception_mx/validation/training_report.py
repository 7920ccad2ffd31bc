"""What ``xception-parity --training`` prints and which layer it names (``training_parity``
runs the comparison).

The verdict names a layer: the first whose training-mode output differs (in forward order),
else the first whose BatchNorm moving statistics differ, else the gradient nearest the loss
that differs (a backward defect spoils every gradient below it), else the first layer an
optimizer's step moves differently.
"""
from .training_step import ROUNDING_FACTOR

FORWARD = ("output", "moving_mean", "moving_variance")


def culprit(records):
    """The record that names the layer to look at, or ``None`` when all pass (module doc)."""
    bad = [r for r in records if r.deviation > r.tolerance]
    for kinds, order in ((("loss", "logits") + FORWARD[:1], 1), (FORWARD[1:], 1),
                         (("gradient",), -1)):
        found = [r for r in bad if r.what in kinds and r.keras_layer is not None][::order]
        if found:
            return found[0]
    return next((r for r in bad), None)


def format_training(records, details):
    """The report xception-parity --training prints: a line per quantity, the gradients per
    layer, and the verdict."""
    lines = ["training step: %d inputs, labels %s; in Keras as Identity: %s" % (
        len(details["inputs"]), details["labels"], ", ".join(details["identity_in_keras"])
        or "none"), "recipe: %s; regularizers: %s" % (details["recipe"],
                                                     details["regularizers"])]
    lines.append("%-16s %6s  %12s  %12s  %12s  %s" % ("quantity", "count", "worst", "rounding",
                                                      "tolerance", "at layer"))
    kinds = []
    for r in records:
        if r.what not in kinds:
            kinds.append(r.what)
    for kind in kinds:
        group = [r for r in records if r.what == kind]
        worst = max(group, key=lambda r: r.deviation / r.tolerance)
        lines.append("%-16s %6d  %12.3e  %12.3e  %12.3e  %s" % (
            kind, len(group), worst.deviation, worst.rounding, worst.tolerance,
            worst.keras_layer or "-"))
    lines.append("")
    lines.append("gradient per layer, in float64 (||mxnet - keras|| / ||keras||, the worst of "
                 "its weights):")
    per_layer = {}
    for r in records:
        if r.what == "gradient":
            best = per_layer.get(r.keras_layer)
            if best is None or r.deviation / r.tolerance > best.deviation / best.tolerance:
                per_layer[r.keras_layer] = r
    width = max([len(n) for n in per_layer] + [5])
    for name, r in per_layer.items():
        lines.append("  %-*s  %12.3e  %12.3e  %12.3e%s" % (
            width, name, r.deviation, r.rounding, r.tolerance,
            "  <-- beyond tolerance" if r.deviation > r.tolerance else ""))
    found = culprit(records)
    if found is None:
        lines.append("PASS: every quantity within max(atol %.1e (gradients: none), %g x Keras' "
                     "own rounding, measured against its float64 twin)"
                     % (details["atol"], ROUNDING_FACTOR))
    else:
        lines.append("FAIL: first layer beyond tolerance: %s (%s: %.3e > %.3e)" % (
            found.keras_layer or found.what, found.what, found.deviation, found.tolerance))
    return "\n".join(lines)
