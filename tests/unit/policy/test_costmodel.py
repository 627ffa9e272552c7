from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smiless.catalogue import Kind
from smiless.policy.autoscaler import ResourceLadder
from smiless.policy.costmodel import Candidate, Forecast, Mode, evaluate, evaluate_batched, pareto_front
from smiless.policy.search import exact_plan, fast_plan

from .helpers import CATALOGUE, profile

CPU1 = CATALOGUE["cpu-1"]
U = CPU1.price_per_second
# T(1, 1 core) = 0.5/1 + 0.5 = 1.0 s warm; init μ = 2 s, σ = 0, so T_exec = 3.0 s
P = profile(Kind.CPU, 1.0, 0.5, 0.0, 0.5, 2.0, 0.0)
LADDER = ResourceLadder.of(CATALOGUE.values(), Kind.CPU)


def at(it: float, count: int = 1, keep: float = 0.0, ladder: ResourceLadder | None = None) -> Candidate:
    return evaluate(P, CPU1, Forecast(it, count, keep), ladder)


def test_case_1_prewarm_from_it_equal_to_exec() -> None:
    c = at(3.0)
    assert c.mode is Mode.PREWARM
    assert c.latency_s == pytest.approx(1.0) and c.exec_s == pytest.approx(3.0)
    assert c.cost == pytest.approx(U * 3.0)
    assert c.prewarm_window_s == pytest.approx(0.0) and c.keep_alive_s == 0.0
    far = at(30.0)
    assert far.cost == pytest.approx(U * 3.0), "pre-warmed: the cost does not grow with the gap"
    assert far.prewarm_window_s == pytest.approx(27.0)


def test_case_2_keep_alive_just_below_exec() -> None:
    c = at(2.999)
    assert c.mode is Mode.KEEP_ALIVE
    assert c.cost == pytest.approx(U * 2.999)
    assert c.prewarm_window_s == 0.0
    assert c.keep_alive_s == pytest.approx(1.999)
    assert at(2.0, keep=7.5).keep_alive_s == pytest.approx(7.5), "the predictor's idle tail is a floor"


def test_it_equal_to_inference_is_still_one_instance() -> None:
    c = at(1.0)
    assert c.mode is Mode.KEEP_ALIVE and c.instances == 1
    assert c.cost == pytest.approx(U * 1.0)


def test_case_3_overlapping_arrivals_need_more_instances() -> None:
    c = at(0.999)
    assert c.mode is Mode.SCALED and c.instances == 2
    assert c.cost == pytest.approx(2 * U * 0.999)
    c = at(0.4)
    assert c.instances == 3 and c.cost == pytest.approx(3 * U * 0.4)


def test_case_3_burst_uses_the_autoscaler_and_is_billed_per_invocation() -> None:
    alone = at(100.0, count=4)  # no ladder: one instance per invocation
    assert alone.mode is Mode.SCALED and alone.instances == 4 and alone.batch == 1
    assert alone.cost == pytest.approx(4 * U * 3.0 / 4)
    scaled = at(100.0, count=4, ladder=LADDER)
    # T(B, r) = 0.5 B / r + 0.5 <= 1.0 needs r >= B: cheapest is any r = B split, all ties at
    # linear prices, broken to one instance of cpu-4 at batch 4
    assert (scaled.instances, scaled.batch, scaled.instance_config) == (1, 4, "cpu-4")
    assert scaled.latency_s == pytest.approx(1.0) and scaled.busy_s <= 1.0 + 1e-12
    assert scaled.mode is Mode.SCALED and scaled.prewarm_window_s > 0
    # one cpu-4 alive for its init (2 s) and the batch (1 s), billed a quarter per invocation
    assert scaled.exec_s == pytest.approx(3.0)
    assert scaled.cost == pytest.approx(CATALOGUE["cpu-4"].price_per_second * 3.0 / 4)


def test_sla_slack_buys_batches_instead_of_instances() -> None:
    # T(B, 1 core) = 0.1 B + 0.5: batching 8 on one cpu-1 takes 1.3 s instead of 0.6 s
    p = profile(Kind.CPU, 1.0, 0.1, 0.0, 0.5, 2.0, 0.0)
    only = ResourceLadder.of([CPU1], Kind.CPU)
    cands = evaluate_batched(p, "cpu-1", Kind.CPU, 1.0, U, Forecast(100.0, 8), only, 2.0)
    shapes = [(c.batch, c.instances) for c in cands]
    assert shapes == [(1, 8), (2, 4), (4, 2), (8, 1)]
    for c in cands:
        assert c.latency_s == pytest.approx(0.1 * c.batch + 0.5), "the batch is the stage's latency"
    assert [c.cost for c in cands] == sorted((c.cost for c in cands), reverse=True), "fewer is cheaper"
    assert evaluate_batched(p, "cpu-1", Kind.CPU, 1.0, U, Forecast(100.0, 1), only, 2.0) == [
        evaluate(p, CPU1, Forecast(100.0, 1), only)
    ]
    cat = {"cpu-1": CPU1}
    for plan_fn in (fast_plan, exact_plan):
        roomy = plan_fn(["f"], [], 2.0, {"f": {"cpu": p}}, cat, Forecast(100.0, 8))
        assert (roomy.functions["f"].batch, roomy.functions["f"].instances) == (8, 1)
        tight = plan_fn(["f"], [], 0.65, {"f": {"cpu": p}}, cat, Forecast(100.0, 8))
        assert (tight.functions["f"].batch, tight.functions["f"].instances) == (1, 8)
        assert tight.feasible and roomy.cost < tight.cost


def test_init_is_planned_at_mu_plus_k_sigma() -> None:
    p = profile(Kind.CPU, 1.0, 0.5, 0.0, 0.5, 2.0, 0.5)
    assert evaluate(p, CPU1, Forecast(100.0)).init_s == pytest.approx(3.5)
    assert evaluate(p, CPU1, Forecast(100.0), k_sigma=1.0).init_s == pytest.approx(2.5)


def test_first_request_extra_counts_in_latency_and_cost() -> None:
    p = profile(Kind.CPU, 1.0, 0.5, 0.0, 0.5, 2.0, 0.0, cs_extra=0.25)
    c = evaluate(p, CPU1, Forecast(100.0))
    assert c.latency_s == pytest.approx(1.25) and c.cost == pytest.approx(U * 3.25)


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 1, 0.0),
        (-1.0, 1, 0.0),
        (1.0, 0, 0.0),
        (1.0, 1, -1.0),
        (math.nan, 1, 0.0),
        (1.0, 1, 0.0, -1.0),
        (1.0, 1, 0.0, math.nan),
        (1.0, 1, 0.0, 0.0, 0.0),
        (1.0, 1, 0.0, 0.0, math.nan),
    ],
)
def test_forecast_rejects_nonsense(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        Forecast(*args)


def test_forecast_from_a_predictor_prediction_in_slots() -> None:
    from smiless.policy.predictors.base import Prediction

    pred = Prediction(3, 2, 0, "smiless", keep_alive_slots=5)
    f = Forecast.from_slots(pred, 2.0)
    assert (f.it_s, f.count, f.keep_alive_s, f.burst_s, f.it_median_s) == (6.0, 2, 10.0, 2.0, None)
    assert Forecast.from_slots(replace(pred, keep_alive_slots=None), 2.0).keep_alive_s == 0.0
    assert Forecast.from_slots(replace(pred, it_median_slots=7), 2.0).it_median_s == 14.0


def cand(cost: float, lat: float) -> Candidate:
    return Candidate("c", Kind.CPU, lat, cost, Mode.PREWARM, 0, lat, lat, 0, 0, 1, 1, "c", 1.0)


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0.01, 10)), min_size=1, max_size=20))
def test_pareto_front_keeps_exactly_the_undominated(points: list[tuple[float, float]]) -> None:
    cands = [cand(c, lat) for c, lat in points]
    front = pareto_front(cands)
    costs = [c.cost for c in front]
    lats = [c.latency_s for c in front]
    assert costs == sorted(costs)
    assert all(a > b for a, b in itertools.pairwise(lats)), "latency strictly falls"
    for x in cands:  # everything dropped is matched or beaten on both axes by a kept one
        assert any(f.cost <= x.cost and f.latency_s <= x.latency_s for f in front)
    for f in front:  # nothing kept is strictly beaten on both
        assert not any(
            (x.cost < f.cost and x.latency_s <= f.latency_s)
            or (x.cost <= f.cost and x.latency_s < f.latency_s)
            for x in cands
        )
