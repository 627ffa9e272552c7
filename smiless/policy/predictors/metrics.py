"""Accuracy measures shared by the validation steps inside the models and the benchmark.

sMAPE is on the 0..2 scale (as the Predict API reports `recent_error`), not in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatsLike = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer]


def smape(predicted: FloatsLike, actual: FloatsLike) -> float:
    """Mean of |p - a| / ((|p| + |a|) / 2); a point where both are 0 counts as exact."""
    p = np.asarray(predicted, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if p.shape != a.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {a.shape}")
    if p.size == 0:
        return float("nan")
    denom = (np.abs(p) + np.abs(a)) / 2.0
    err = np.divide(np.abs(p - a), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(err.mean())


def over_rate(predicted: FloatsLike, actual: FloatsLike) -> float:
    """Share of points predicted above the actual value (an IT over-estimate pre-warms late)."""
    p = np.asarray(predicted, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    return float(np.mean(p > a)) if p.size else float("nan")


def under_rate(predicted: FloatsLike, actual: FloatsLike) -> float:
    """Share of points predicted below the actual value (a count under-estimate under-provisions)."""
    p = np.asarray(predicted, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    return float(np.mean(p < a)) if p.size else float("nan")
