"""Baselines, the cold-start rule, the idle-time keep-alive and the byte format."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from smiless.policy.predictors import (
    ArimaPredictor,
    FourierPredictor,
    HybridHistogramPredictor,
    IdleTimeDistribution,
    LastValuePredictor,
    ModelFormatError,
    MovingAveragePredictor,
    SlotSeries,
    fft_extrapolate,
    load_predictor,
    make_predictor,
    over_rate,
    smape,
    under_rate,
)
from smiless.policy.predictors.arima import ArmaParams


def periodic_counts(its: list[int], repeats: int, count: int = 1) -> np.ndarray:
    """A count history whose ITs cycle through `its`."""
    slots = np.cumsum([0] + its * repeats)
    counts = np.zeros(int(slots[-1]) + 1, dtype=np.int64)
    counts[slots] = count
    return counts


def test_metrics() -> None:
    assert smape([1, 3], [1, 1]) == pytest.approx(0.5)
    assert smape([0], [0]) == 0.0
    assert over_rate([2, 1, 1], [1, 1, 2]) == pytest.approx(1 / 3)
    assert under_rate([2, 1, 1], [1, 1, 2]) == pytest.approx(1 / 3)


def test_last_value_and_moving_average() -> None:
    counts = [1, 0, 0, 2, 0, 5, 0, 0, 0, 1]
    p = LastValuePredictor().fit(counts).predict(counts)
    assert (p.it_slots, p.count, p.fallback) == (4, 1, False)
    m = MovingAveragePredictor(window=2).predict(counts)
    assert (m.it_slots, m.count) == (3, 3)  # mean(2, 4) ITs; mean(5, 1) counts


def test_cold_start_rule_is_conservative_and_said() -> None:
    counts = [0, 4, 0, 0, 1, 0, 2, 0, 0]
    for kind in ("last-value", "fip", "arima", "smiless"):
        p = make_predictor(kind).fit(counts).predict(counts)
        if kind == "last-value":
            continue  # needs one IT only
        assert p.fallback, kind
        assert p.reason, kind
        assert p.it_slots == 2  # the shortest IT seen
        assert p.count == 4  # the largest count seen
        assert p.elapsed_slots == 2
        assert p.next_in_slots == 0
    empty = LastValuePredictor().predict([0, 0])
    assert (empty.it_slots, empty.count, empty.fallback) == (1, 1, True)


def test_fft_continues_a_period_that_fits_the_window() -> None:
    assert fft_extrapolate(np.array([1.0, 5.0, 5.0, 1.0]), 10) == pytest.approx(1.0)
    assert fft_extrapolate(np.arange(10.0), 3) == pytest.approx(10.0)
    counts = periodic_counts([2, 6, 6, 2], 15)
    p = FourierPredictor(window=60).predict(counts)
    assert p.it_slots == 2


def test_arma_recursion_matches_statsmodels() -> None:
    from statsmodels.tsa.arima.model import ARIMA  # type: ignore[import-untyped, unused-ignore]

    rng = np.random.default_rng(1)
    e = rng.normal(size=300)
    y = np.zeros(300)
    for t in range(2, 300):
        y[t] = 0.5 * y[t - 1] - 0.2 * y[t - 2] + e[t] + 0.3 * e[t - 1]
    y += 20.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ARIMA(y, order=(2, 0, 1), trend="c").fit()
    params = ArmaParams(float(res.params[0]), tuple(res.arparams), tuple(res.maparams))
    assert params.forecast(y[-64:]) == pytest.approx(float(res.forecast(1)[0]), abs=1e-3)


def test_arima_fits_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    its = rng.integers(2, 6, size=80).tolist()
    counts = periodic_counts(its, 1)
    p = ArimaPredictor().fit(counts)
    assert p.it_params is not None
    a = p.predict(counts)
    assert not a.fallback and 1 <= a.it_slots <= 8
    b = load_predictor(p.to_bytes())
    assert isinstance(b, ArimaPredictor) and b.predict(counts) == a
    assert ArimaPredictor().predict(counts).fallback  # never fitted


def test_hybrid_histogram_branches() -> None:
    hh = HybridHistogramPredictor()
    # A peaked histogram: ITs of 10 or 11 -> pre-warm from the head, keep-alive past the tail.
    counts = periodic_counts([10, 11], 20)
    p = hh.predict(counts)  # unfitted: only the out-of-bounds branch needs a fit
    assert p.reason == ""
    assert p.prewarm_slots == pytest.approx(10 * 0.9)
    assert p.it_slots == 9
    assert p.keep_alive_slots == int(np.ceil(12 * 1.1))
    # Too few ITs: not representative -> keep warm for the whole range.
    few = periodic_counts([10], 3)
    q = hh.predict(few)
    assert q.prewarm_slots == 0.0 and q.keep_alive_slots == 240 and "not representative" in q.reason
    # Most ITs beyond the 240-slot range -> the ARIMA branch.
    far = periodic_counts([300, 310], 10)
    r = HybridHistogramPredictor().fit(far).predict(far)
    assert "ARIMA" in r.reason and r.it_slots > 200
    assert load_predictor(hh.to_bytes()).predict(counts) == p


def test_idle_time_keep_alive() -> None:
    # 99 runs of 0 empty slots and one of 9: the 99th percentile is 0 -> keep 1 slot.
    its = [1] * 99 + [10]
    counts = periodic_counts(its, 1)
    assert IdleTimeDistribution().keep_alive(counts).slots == 1
    assert IdleTimeDistribution(percentile=100).keep_alive(counts).slots == 10
    assert IdleTimeDistribution(percentile=50).keep_alive(periodic_counts([3, 5], 10)).slots == 3
    short = IdleTimeDistribution(default_slots=600).keep_alive([1, 0, 1])
    assert short.fallback and short.slots == 600
    with pytest.raises(ValueError):
        IdleTimeDistribution(percentile=0)


def test_bytes_are_checked() -> None:
    data = MovingAveragePredictor(window=7).to_bytes()
    assert isinstance(load_predictor(data), MovingAveragePredictor)
    assert MovingAveragePredictor.from_bytes(data).window == 7
    with pytest.raises(ModelFormatError, match="magic"):
        load_predictor(b"XXXX" + data[4:])
    with pytest.raises(ModelFormatError, match="truncated"):
        load_predictor(data[:12])
    with pytest.raises(ModelFormatError, match="not 'fip'"):
        FourierPredictor.from_bytes(data)
    with pytest.raises(ValueError, match="unknown predictor"):
        make_predictor("oracle")


def test_predictions_do_not_depend_on_the_series_form() -> None:
    counts = periodic_counts([3, 4, 5], 10)
    s = SlotSeries.from_counts(counts)
    for kind in ("last-value", "moving-average", "fip"):
        p = make_predictor(kind)
        assert p.predict(counts) == p.predict(s)
