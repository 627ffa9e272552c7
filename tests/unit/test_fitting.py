from __future__ import annotations

import math

import numpy as np
import pytest

from smiless.policy.fitting import FitError, LatencySample, coverage, fit_inference, fit_init
from smiless.policy.profile import InferenceModel


def grid(model: InferenceModel, noise: float = 0.0, seed: int = 0) -> list[LatencySample]:
    rng = np.random.default_rng(seed)
    return [
        LatencySample(b, r, model.latency(b, r) * (1 + noise * rng.standard_normal()))
        for r in (1.0, 2.0)
        for b in (1, 2, 4, 8, 16)
    ]


def test_recovers_an_exact_model() -> None:
    truth = InferenceModel(0.02, 0.75, 0.25, 0.004)
    fit = fit_inference(grid(truth))
    for b in (1, 3, 16):
        for r in (1.0, 2.0, 4.0):
            assert fit.model.latency(b, r) == pytest.approx(truth.latency(b, r), rel=1e-4)
    assert fit.mape < 1e-4
    assert fit.model.alpha + fit.model.beta == pytest.approx(1.0)


def test_noisy_fit_keeps_error_small_and_parameters_physical() -> None:
    fit = fit_inference(grid(InferenceModel(0.01, 0.6, 0.4, 0.002), noise=0.03, seed=4))
    assert fit.mape < 0.08
    m = fit.model
    assert min(m.lam, m.alpha, m.beta, m.gamma) >= 0


def test_held_out_error_exceeds_training_error_on_a_wrong_model() -> None:
    # quadratic growth in B: the linear model must show a clearly worse held-out error
    samples = [LatencySample(b, r, 0.001 * b * b / r + 0.002) for r in (1.0, 2.0) for b in (1, 2, 4, 8, 16)]
    fit = fit_inference(samples)
    assert fit.mape > 0.10
    assert fit.mape >= fit.train_mape


def test_single_resource_is_flagged() -> None:
    samples = [LatencySample(b, 1.0, 0.01 * b + 0.003) for b in (1, 2, 4, 8)]
    fit = fit_inference(samples)
    assert fit.model.alpha == 0 and fit.model.beta == pytest.approx(1.0)
    assert any("only one resource" in n for n in fit.notes)
    assert fit.model.latency(4, 1.0) == pytest.approx(0.043, rel=1e-3)


def test_bad_inputs() -> None:
    with pytest.raises(FitError):
        fit_inference([LatencySample(1, 1.0, 0.1)])
    with pytest.raises(FitError):
        fit_inference([LatencySample(1, 1.0, 0.1), LatencySample(2, 1.0, -0.1), LatencySample(4, 1.0, 0.2)])


def test_init_fit_and_coverage() -> None:
    rng = np.random.default_rng(1)
    starts = [
        {"import": 1.0 + 0.1 * rng.standard_normal(), "load": 0.5 + 0.05 * rng.standard_normal()}
        for _ in range(200)
    ]
    init = fit_init(starts)
    assert init.mean == pytest.approx(1.5, abs=0.03)
    assert init.std == pytest.approx(math.hypot(0.1, 0.05), rel=0.15)
    totals = [sum(s.values()) for s in starts]
    assert coverage(init, totals) >= 0.99
    assert coverage(init, [init.bound() + 1]) == 0.0
    with pytest.raises(FitError):
        fit_init(starts[:1])


def test_drift_and_merge() -> None:
    from smiless.policy.fitting import drift, merge_points

    truth = InferenceModel(0.02, 0.75, 0.25, 0.004)
    stored = grid(truth)
    assert drift(truth, stored) == pytest.approx(0.0, abs=1e-9)
    slower = [LatencySample(s.batch, s.r, s.seconds * 1.5) for s in stored if s.batch <= 4]
    assert drift(truth, slower) == pytest.approx(1 / 3, rel=1e-6)
    merged = merge_points(truth, stored, slower)
    assert len(merged) == len(stored)
    refit = fit_inference(merged).model
    for b in (1, 2, 16):  # a uniform 1.5x slowdown seen at small batches applies everywhere
        assert refit.latency(b, 1.0) == pytest.approx(truth.latency(b, 1.0) * 1.5, rel=1e-3)
