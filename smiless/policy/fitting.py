"""Fitting profiles from measurements (pure: numbers in, models out).

Inference. `T(B, r) = λ·B·(α/r + β) + γ` is linear in three identifiable quantities:
`a = λα` (parallel work per request), `b = λβ` (serial work per request) and `γ`; λ, α, β
separately are not identifiable. We fit (a, b, γ) ≥ 0 by bounded least squares on relative
errors (each row divided by its measured time, so a 5 ms and a 500 ms point weigh alike,
which is what a MAPE target asks for) and report it in Amdahl's normalisation: λ = a + b
(one request's work on one unit of resource), α = a/λ the parallel fraction, β = b/λ the
serial fraction, α + β = 1.

With a single resource level `a/r` and `b` cannot be told apart. We then fit
`c = a/r + b` and record the split as fully serial (α = 0, β = 1): more resource is never
predicted to help, the conservative reading. The fit says so in `notes`.

Held-out error: leave-one-batch-size-out. For each batch size, fit on the others and
predict it; the MAPE over those predictions is the fit's reported error.

Init. Each phase's μ and σ (sample standard deviation) over N cold starts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import lsq_linear

from smiless.policy.profile import InferenceModel, InitModel, InitPhase


@dataclass(frozen=True)
class LatencySample:
    """Median warm latency (seconds) of a batch of `batch` requests on resource `r`."""

    batch: int
    r: float
    seconds: float


@dataclass(frozen=True)
class InferenceFit:
    model: InferenceModel
    mape: float  # held-out, 0..1
    train_mape: float
    notes: tuple[str, ...] = field(default=())


class FitError(ValueError):
    pass


def _solve(samples: Sequence[LatencySample], split: bool) -> tuple[float, float, float]:
    t = np.array([s.seconds for s in samples])
    if split:
        x = np.array([[s.batch / s.r, s.batch, 1.0] for s in samples])
    else:
        x = np.array([[0.0, s.batch, 1.0] for s in samples])
    res = lsq_linear(x / t[:, None], np.ones_like(t), bounds=(0.0, np.inf))
    a, b, gamma = (float(v) for v in res.x)
    return a, b, gamma


def _to_model(a: float, b: float, gamma: float) -> InferenceModel:
    lam = a + b
    if lam <= 0.0:
        # No per-request work measurable: the time is all fixed overhead.
        return InferenceModel(0.0, 0.0, 1.0, max(gamma, 1e-6))
    return InferenceModel(lam, a / lam, b / lam, max(gamma, 1e-9) if b == 0.0 else gamma)


def mape(model: InferenceModel, samples: Sequence[LatencySample]) -> float:
    return float(np.mean([abs(model.latency(s.batch, s.r) - s.seconds) / s.seconds for s in samples]))


def fit_inference(samples: Sequence[LatencySample]) -> InferenceFit:
    """Fit the inference model; raises FitError when the data cannot support one."""
    if len(samples) < 3:
        raise FitError(f"need at least 3 (batch, resource) points, got {len(samples)}")
    if any(s.seconds <= 0 or s.batch < 1 or s.r <= 0 for s in samples):
        raise FitError("latencies, batch sizes and resources must be positive")
    resources = sorted({s.r for s in samples})
    batches = sorted({s.batch for s in samples})
    split = len(resources) > 1
    notes: list[str] = []
    if not split:
        notes.append(
            f"only one resource level (r={resources[0]:g}) was measured: the parallel/serial split is not "
            "identified, recorded as fully serial (alpha=0, beta=1)"
        )
    model = _to_model(*_solve(samples, split))
    held: list[float] = []
    if len(batches) >= 3:
        for b in batches:
            train = [s for s in samples if s.batch != b]
            test = [s for s in samples if s.batch == b]
            held.append(mape(_to_model(*_solve(train, split)), test) * len(test))
        held_out = sum(held) / len(samples)
    else:
        notes.append("fewer than 3 batch sizes: the reported error is the training error")
        held_out = mape(model, samples)
    return InferenceFit(model, held_out, mape(model, samples), tuple(notes))


def fit_init(cold_starts: Sequence[Mapping[str, float]]) -> InitModel:
    """Per-phase normal model from cold starts (each a phase -> seconds mapping)."""
    if len(cold_starts) < 2:
        raise FitError(f"need at least 2 cold starts for a standard deviation, got {len(cold_starts)}")
    names = list(cold_starts[0])
    phases = []
    for name in names:
        values = [c[name] for c in cold_starts if name in c]
        if len(values) != len(cold_starts):
            raise FitError(f"phase {name!r} is missing from some cold starts")
        phases.append(InitPhase(name, statistics.fmean(values), statistics.stdev(values)))
    return InitModel(tuple(phases))


def coverage(init: InitModel, totals: Sequence[float], k: float = 3.0) -> float:
    """Share of observed total init times within the planner's bound μ + kσ."""
    if not totals:
        return math.nan
    bound = init.bound(k)
    return sum(t <= bound for t in totals) / len(totals)


def drift(model: InferenceModel, samples: Sequence[LatencySample]) -> float:
    """Median relative error of `model` on observed samples (0 when there are none)."""
    if not samples:
        return 0.0
    return float(np.median([abs(model.latency(s.batch, s.r) - s.seconds) / s.seconds for s in samples]))


def merge_points(
    model: InferenceModel, stored: Sequence[LatencySample], recent: Sequence[LatencySample]
) -> list[LatencySample]:
    """The points an online refit fits. Recent observations replace stored measurements of
    the same (batch, resource). The other stored points are scaled by the median ratio of
    observed to modelled latency: the gateway mostly sees a few batch sizes, and a slowdown
    it sees there (a noisy neighbour, a slower host) is taken to apply everywhere, rather
    than letting stale points pull the refit back to the old model."""
    if not recent:
        return list(stored)
    ratio = float(np.median([s.seconds / model.latency(s.batch, s.r) for s in recent]))
    seen = {(s.batch, s.r) for s in recent}
    return [
        *recent,
        *(LatencySample(s.batch, s.r, s.seconds * ratio) for s in stored if (s.batch, s.r) not in seen),
    ]
