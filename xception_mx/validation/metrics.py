"""How far apart two outputs are, robust to NaN and infinity."""
import math

import numpy as np


def max_deviation(reference, candidate):
    """max |reference - candidate|; infinite where exactly one side is not finite
    (a NaN from a broken layer must not read as agreement), 0 where both are
    the same non-finite value."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.abs(reference - candidate)
    same = (np.isnan(reference) & np.isnan(candidate)) | (reference == candidate)
    diff[same] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


def max_magnitude(array):
    """max |array| over its finite values (0 if none)."""
    array = np.asarray(array)
    finite = array[np.isfinite(array)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def json_safe(value):
    """Floats JSON can carry: infinities and NaN become the strings "inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
