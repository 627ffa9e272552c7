"""The SMIless IT and count models: learning, bias, fallbacks, persistence, CPU budget.

Networks are trained with a small budget so the file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smiless.policy.predictors import (
    CountModel,
    ItModel,
    LastValuePredictor,
    SlotSeries,
    SMIlessPredictor,
    TrainingBudget,
    load_predictor,
    under_rate,
)

SMALL = TrainingBudget(hidden=16, max_epochs=60, patience=8, batch_size=32, max_windows=128)


def history(its: list[int], counts: list[int]) -> np.ndarray:
    """Per-slot counts with the given ITs between arrivals and the given arrival counts."""
    slots = np.concatenate([[0], np.cumsum(its)])
    out = np.zeros(int(slots[-1]) + 1, dtype=np.int64)
    out[slots] = counts
    return out


def walk_forward(p: SMIlessPredictor, counts: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Predict IT and count at each arrival from index `first` on (history up to that arrival)."""
    s = SlotSeries.from_counts(counts)
    preds = [p.predict(counts[: s.arrival_slots[j] + 1]) for j in range(first, s.its.size)]
    return np.array([x.it_slots for x in preds]), np.array([x.count for x in preds])


@pytest.fixture(scope="module")
def periodic() -> tuple[np.ndarray, SMIlessPredictor]:
    # ITs cycle 2, 2, 9 (a short burst, then a pause); counts follow the same cycle.
    its = [2, 2, 9] * 50
    counts = [1] + [3, 1, 6] * 50
    h = history(its, counts)
    cut = SlotSeries.from_counts(h).arrival_slots[120]
    return h, SMIlessPredictor(budget=SMALL).fit(h[: cut + 1])


def test_periodic_series_gets_its_it_predicted(periodic: tuple[np.ndarray, SMIlessPredictor]) -> None:
    h, p = periodic
    true = SlotSeries.from_counts(h).its[120:]
    assert p.it_model.net is not None
    # The network learned the cycle (to the slot: 2, 2 then 8 or 9)...
    raw, _ = walk_forward(p.with_correction("none"), h, 120)
    assert np.all(np.abs(raw - true) <= 1), (raw, true)
    # ...which the naive forecast cannot: after the 9 it says 9, after the second 2 it says 2.
    s = SlotSeries.from_counts(h)
    naive = np.array(
        [LastValuePredictor().predict(h[: s.arrival_slots[j] + 1]).it_slots for j in range(120, 150)]
    )
    assert np.mean(np.abs(naive - true) <= 1) < 0.5
    # ...and the default (shrunk) forecast never pre-warms late and is at most a slot early.
    it_pred, _ = walk_forward(p, h, 120)
    assert np.all(it_pred <= true) and np.all(it_pred >= true - 1), (it_pred, true)
    last = p.predict(h)
    assert last.model == "smiless" and not last.fallback and last.reason == ""
    assert last.it_confidence is not None and last.recent_error is not None
    # ...and each prediction also carries the median it shrank (for the SLA-aware planner)
    s = SlotSeries.from_counts(h)
    for j in range(120, 130):
        pred = p.predict(h[: s.arrival_slots[j] + 1])
        assert pred.it_median_slots == p.with_correction("none").predict(h[: s.arrival_slots[j] + 1]).it_slots
        assert pred.it_median_slots >= pred.it_slots


def test_periodic_counts_not_under_estimated(periodic: tuple[np.ndarray, SMIlessPredictor]) -> None:
    h, p = periodic
    _, count_pred = walk_forward(p, h, 120)
    true = SlotSeries.from_counts(h).arrival_counts[121:]
    assert under_rate(count_pred, true) == 0.0
    assert float(np.mean(count_pred / true)) <= 4.0  # biased up, not unbounded


def test_count_never_exceeds_the_largest_count_seen() -> None:
    """Bursty counts (mostly 1, every fourth arrival 14): the count model's bucketed quantile
    with its margin would forecast above 14; the prediction is capped at the largest count
    the app has had, and still covers every burst."""
    rng = np.random.default_rng(3)
    n = 240
    counts = [14 if k % 4 == 0 else int(rng.integers(1, 3)) for k in range(n)]
    its = rng.choice([2, 3, 5], size=n - 1).tolist()
    h = history(its, counts)
    first = 180
    cut = SlotSeries.from_counts(h).arrival_slots[first]
    p = SMIlessPredictor(budget=SMALL).fit(h[: cut + 1])
    _, count_pred = walk_forward(p, h, first)
    assert int(count_pred.max()) <= 14
    true = SlotSeries.from_counts(h).arrival_counts[first + 1 :]
    assert under_rate(count_pred, true) <= 0.05


def test_count_model_under_estimate_rate_on_noisy_series() -> None:
    rng = np.random.default_rng(7)
    n = 400
    level = 10 + 5 * np.sin(np.arange(n) / 15.0)  # a slow cycle under Poisson noise
    counts = np.maximum(1, rng.poisson(level)).tolist()
    its = rng.choice([1, 2, 3], size=n - 1).tolist()
    h = history(its, counts)
    first = 300
    cut = SlotSeries.from_counts(h).arrival_slots[first]
    m = CountModel(budget=SMALL)
    m.fit(SlotSeries.from_counts(h[: cut + 1]))
    assert m.net is not None and m.width in (1, 2, 4, 8)
    s = SlotSeries.from_counts(h)
    pred = [m.forecast(SlotSeries.from_counts(h[: s.arrival_slots[j] + 1])) for j in range(first, s.its.size)]
    rate = under_rate(np.array(pred, dtype=float), s.arrival_counts[first + 1 :])
    assert rate <= 0.05, rate
    # ...while a plain median forecast under-estimates far more often.
    median = np.median(s.arrival_counts[: first + 1])
    assert under_rate(np.full(len(pred), median), s.arrival_counts[first + 1 :]) > 0.3


def test_short_history_falls_back_and_says_why() -> None:
    h = history([3, 5, 2, 4], [1, 2, 7, 1, 1])
    p = SMIlessPredictor(budget=SMALL).fit(h)
    out = p.predict(h)
    assert out.fallback and out.model == "cold-start"
    assert "IT: 4 inter-arrivals < 32 needed" in out.reason and "count:" in out.reason
    assert (out.it_slots, out.count) == (2, 7)
    assert out.it_confidence is None and out.recent_error is None
    never = SMIlessPredictor(budget=SMALL).predict(h)
    assert never.fallback and "not fitted" in never.reason


def test_constant_it_needs_no_network() -> None:
    h = history([1] * 60, [2] * 61)
    p = SMIlessPredictor(budget=SMALL).fit(h)
    out = p.predict(h)
    assert p.it_model.net is None and p.it_model.constant == 1.0
    assert (out.it_slots, out.count, out.fallback) == (1, 2, False)


def test_round_trip_through_bytes(periodic: tuple[np.ndarray, SMIlessPredictor]) -> None:
    h, p = periodic
    data = p.to_bytes()
    q = load_predictor(data)
    assert isinstance(q, SMIlessPredictor)
    for end in (200, 300, len(h)):
        assert q.predict(h[:end]) == p.predict(h[:end])
    assert SMIlessPredictor.from_bytes(data).it_model.n_in == p.it_model.n_in


def test_corrections_order_over_estimation(periodic: tuple[np.ndarray, SMIlessPredictor]) -> None:
    _, p = periodic
    f = p.it_model.factors
    assert 0.0 <= f["strict"] <= f["mape"] <= f["none"] == 1.0
    strict = p.with_correction("strict")
    assert strict.it_model.correction == "strict" and p.it_model.correction == "record"
    assert strict.it_model.net is p.it_model.net  # no retraining
    for mode in ("record", "mape", "strict", "none"):
        assert 0.0 <= p.it_model.val_over[mode] <= 1.0 and p.it_model.val_smape[mode] >= 0.0


def record_case() -> tuple[np.ndarray, ItModel]:
    """ITs 1, 4, 4 repeating with a memoryless share mixed in: the median is sometimes early,
    and over-estimates only where a random IT cuts a cycle short."""
    rng = np.random.default_rng(5)
    its = [int(x) for x in ([1, 4, 4] * 60)]
    for i in rng.choice(len(its), size=12, replace=False):
        its[i] = int(rng.integers(1, 6))
    h = history(its, [1] * (len(its) + 1))
    m = ItModel(windows=(6,), budget=SMALL)
    m.fit(SlotSeries.from_counts(h))
    assert m.net is not None
    return h, m


def test_record_is_the_median_forecast_of_each_past_it() -> None:
    h, m = record_case()
    s = SlotSeries.from_counts(h)
    median, true = m._record(s)
    assert median.size == true.size == m.record_window
    assert np.array_equal(true, s.its[-m.record_window :])
    # Each entry is what the model forecast from the history up to the arrival before that IT.
    for k in (0, 17, m.record_window - 1):
        j = s.its.size - m.record_window + k
        before = SlotSeries.from_counts(h[: s.arrival_slots[j] + 1])
        assert median[k] == max(1, round(m.raw_forecast(before) or 0.0))


def test_record_correction_takes_the_median_only_after_a_clean_record() -> None:
    h, m = record_case()
    s = SlotSeries.from_counts(h)
    median, true = m._record(s)
    over = median > true
    mape = m.recalibrated("mape").forecast_and_median(s)
    assert mape is not None
    it, med = m.forecast_and_median(s) or (0, 0)
    # over-estimates in the last 50: the record is not clean, so "record" is "mape"
    assert over.any() and (it, med) == mape
    # a tolerance of the record's own over-estimate share makes it clean: the median
    loose = m.recalibrated("record", it_over_target=float(over.mean()))
    assert loose.forecast_and_median(s) == (med, med)
    # too short a record (fewer than record_min forecasts) is never clean
    assert not m._clean(np.ones(m.record_min - 1, dtype=np.int64), np.full(m.record_min - 1, 9.0))
    assert m._clean(np.ones(m.record_min, dtype=np.int64), np.full(m.record_min, 9.0))
    # only the last record_window count
    old_misses = np.concatenate([np.full(5, 9), np.ones(m.record_window, dtype=np.int64)])
    assert m._clean(old_misses, np.ones(old_misses.size))


def test_noisy_it_is_shrunk_against_over_estimation() -> None:
    rng = np.random.default_rng(3)
    its = rng.geometric(0.2, size=120).tolist()  # memoryless: nothing to learn but the scale
    h = history(its, [1] * 121)
    first = 90
    cut = SlotSeries.from_counts(h).arrival_slots[first]
    p = SMIlessPredictor(it_model=ItModel(windows=(4, 8)), budget=SMALL).fit(h[: cut + 1])
    raw = p.with_correction("none")
    true = SlotSeries.from_counts(h).its[first:]
    corrected, _ = walk_forward(p, h, first)
    uncorrected, _ = walk_forward(raw, h, first)
    assert np.mean(corrected > true) < np.mean(uncorrected > true)


def test_training_is_deterministic_and_keeps_thread_setting() -> None:
    torch.set_num_threads(2)
    its = ([1, 4, 2] * 20)[:50]
    h = history(its, [1] * 51)
    a = ItModel(budget=SMALL)
    a.fit(SlotSeries.from_counts(h))
    assert torch.get_num_threads() == 2
    b = ItModel(budget=SMALL)
    b.fit(SlotSeries.from_counts(h))
    assert a.n_in == b.n_in and a.factors == b.factors
    assert a.raw_forecast(SlotSeries.from_counts(h)) == b.raw_forecast(SlotSeries.from_counts(h))


def test_budget_is_validated() -> None:
    with pytest.raises(ValueError):
        TrainingBudget(max_epochs=0)


def test_state_from_before_the_record_correction_restores() -> None:
    h, m = record_case()
    state = m.state()
    del state["record_window"], state["record_min"]
    state["correction"] = "mape"
    net = m.net.state_dict() if m.net is not None else None
    old = ItModel.restore(state, SMALL, net)
    assert (old.record_window, old.record_min, old.correction) == (50, 20, "mape")
    s = SlotSeries.from_counts(h)
    assert old.forecast_and_median(s) == m.recalibrated("mape").forecast_and_median(s)


def test_the_predictor_service_applies_the_configured_correction(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from smiless.config import Settings
    from smiless.services.predictor.service import with_correction

    h, m = record_case()
    p = SMIlessPredictor(it_model=m, budget=SMALL)
    assert p.it_model.correction == "record"
    monkeypatch.setenv("SMILESS_PREDICTOR_IT_CORRECTION", "mape")
    setting = Settings().predictor_it_correction
    q = with_correction(p, setting)
    assert isinstance(q, SMIlessPredictor) and q.it_model.correction == "mape"
    assert q.predict(h).it_slots == p.with_correction("mape").predict(h).it_slots
    assert with_correction(q, "mape") is q  # already so: the same model
    last = LastValuePredictor()
    assert with_correction(last, "mape") is last  # no correction to set
    with pytest.raises(ValueError, match="unknown IT correction"):
        with_correction(p, "median")
    monkeypatch.setenv("SMILESS_PREDICTOR_IT_CORRECTION", "median")
    with pytest.raises(ValidationError):
        Settings()
