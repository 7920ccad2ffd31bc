"""Comparing two training runs on any CPU: deviations measured against the
rounding of the same run, not a fixed tolerance (issue #14)."""
import numpy as np


def deviation(values, reference, origin=None):
    """max over parameters of ||value - reference|| / ||reference - origin||;
    infinite when either side holds NaN or Inf."""
    worst = 0.0
    for name, ref in reference.items():
        if not (np.isfinite(values[name]).all() and np.isfinite(ref).all()):
            return np.inf                       # a diverged run matches nothing
        scale = np.linalg.norm(ref - (origin[name] if origin else 0))
        if scale > 0:
            worst = max(worst, np.linalg.norm(values[name] - ref) / scale)
    return worst


# Float rounding alone makes two evaluations of the same step differ, and
# ReLU/max-pool switches turn that into differences of up to ~1e-2 of a
# parameter's movement within two steps.  How much, depends on the CPU
# (issue #14: a fixed tolerance passed on an AMD EPYC and failed on an Intel
# Xeon).  So each comparison is measured against the rounding of this run: the
# same step evaluated another way that is the same sum, e.g. the batch in
# reverse order, or (where the runs compared split the batch, as several
# contexts do) the batch fed in the same slices on one device: oneDNN picks
# other kernels for another batch size, and their rounding differs in every
# sample, which a reversed batch does not show (measured with oneDNN capped at
# AVX2: 4 contexts 3e-3 after two NAG steps, reversed batch 2.3e-4, slices 3e-3).
# A lost, doubled or averaged share of the batch, or a lost momentum, is a
# deviation of order 1 (a context's lost gradients: 0.58).
ROUNDING_FACTOR = 10
DEVIATION_FLOOR = 1e-4
DEVIATION_CAP = 5e-2


def assert_within_rounding(deviation, rounding, what):
    bound = min(max(ROUNDING_FACTOR * rounding, DEVIATION_FLOOR), DEVIATION_CAP)
    assert deviation <= bound, "%s: deviation %.3g > %.3g (rounding measured %.3g)" % (
        what, deviation, bound, rounding)
