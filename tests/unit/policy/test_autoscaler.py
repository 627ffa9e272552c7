from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.autoscaler import ResourceLadder, scale
from smiless.policy.profile import InferenceModel, load_reference_profiles

from .helpers import CATALOGUE

CPU = ResourceLadder.of(CATALOGUE.values(), Kind.CPU)
GPU = ResourceLadder.of(CATALOGUE.values(), Kind.GPU)


def brute_force(g: int, m: InferenceModel, budget: float, kind: Kind) -> float:
    """Least n * price over every batch 1..G and every config of the kind."""
    best = math.inf
    for cfg in CATALOGUE.values():
        if cfg.kind is not kind:
            continue
        for b in range(1, g + 1):
            if m.latency(b, cfg.resource) <= budget:
                best = min(best, math.ceil(g / b) * cfg.price_per_second)
    return best


models = st.builds(
    InferenceModel,
    st.floats(0.01, 2.0),
    st.one_of(st.just(0.0), st.floats(1e-4, 3.0)),
    st.one_of(st.just(0.0), st.floats(1e-4, 0.3)),
    st.floats(0.01, 0.5),
)


@given(st.integers(1, 60), models, st.floats(0.05, 5.0), st.sampled_from([Kind.CPU, Kind.GPU]))
def test_scale_is_exact_against_brute_force(g: int, m: InferenceModel, budget: float, kind: Kind) -> None:
    ladder = CPU if kind is Kind.CPU else GPU
    if kind is Kind.GPU:
        m = InferenceModel(m.lam, m.alpha * 10, m.beta, m.gamma)
    d = scale(g, m, budget, ladder)
    want = brute_force(g, m, budget, kind)
    if math.isinf(want):
        assert not d.feasible and "no " in d.reason
        assert d.instances == g and d.batch == 1 and d.config == ladder.names[-1]
        return
    assert d.feasible
    assert d.price_per_second == pytest.approx(want, rel=1e-9)
    assert d.instances == math.ceil(g / d.batch)
    assert d.instances * d.batch >= g > (d.instances - 1) * d.batch  # balanced batches
    assert d.latency_s <= budget * (1 + 1e-12)
    assert d.latency_s == pytest.approx(m.latency(d.batch, d.resource))
    assert d.needed_resource <= d.resource * (1 + 1e-9)


def test_worked_example_in_the_docstring() -> None:
    """imagerecognition on CPU, G = 10 within 0.5 s: 2 x cpu-1 and 1 x cpu-2 cost the same;
    the tie goes to the single instance."""
    m = load_reference_profiles()["imagerecognition"]["cpu"].inference
    d = scale(10, m, 0.5, CPU)
    assert (d.instances, d.batch, d.config) == (1, 10, "cpu-2")
    assert d.price_per_second == pytest.approx(0.068 / 3600)


def test_cost_is_not_monotone_in_the_batch_and_the_scaler_still_finds_the_minimum() -> None:
    """The reference bisects on cost(B) = ceil(G/B) * U(r(B)), which zigzags as the instance
    count and the price ladder step. With T(B, r) = B/r + 0.1 within 1.1 s (so r >= B), G = 10:
    B = 2 costs 5 x cpu-2, B = 3 needs cpu-4 for 4 instances, B = 4 is cheaper again."""
    m = InferenceModel(1.0, 1.0, 0.0, 0.1)
    rung = {1: 0.034, 2: 0.068, 4: 0.136, 8: 0.272, 16: 0.544}

    def cost(b: int) -> float:
        r = next(r for r in rung if r >= b)
        return math.ceil(10 / b) * rung[r]

    costs = [cost(b) for b in range(1, 11)]
    assert costs[2] > costs[3] < costs[4], "the example must zigzag"
    d = scale(10, m, 1.1, CPU)
    assert d.price_per_second * 3600 == pytest.approx(min(costs))
    assert (d.instances, d.batch, d.config) == (5, 2, "cpu-2")  # tie with 10 x cpu-1: fewer instances


def test_no_invocations_and_no_configs() -> None:
    m = InferenceModel(1.0, 1.0, 0.0, 0.1)
    assert scale(0, m, 1.0, CPU).instances == 0
    empty = ResourceLadder.of([], Kind.GPU)
    d = scale(3, m, 1.0, empty)
    assert not d.feasible and d.instances == 0


def test_ladder_drops_configs_a_bigger_one_beats_on_price() -> None:
    configs = [
        HardwareConfig("small", Kind.CPU, 1, 0, 1024, 1.0),
        HardwareConfig("pricey", Kind.CPU, 2, 0, 1024, 5.0),
        HardwareConfig("big-cheap", Kind.CPU, 4, 0, 1024, 3.0),
        HardwareConfig("gpu", Kind.GPU, 1, 10, 1024, 0.1),
    ]
    ladder = ResourceLadder.of(configs, Kind.CPU)
    assert ladder.names == ("small", "big-cheap")
    assert ladder.rung_at_least(1.5) == 1
    assert ladder.rung_at_least(5) is None


def test_gpu_shares_scale_with_the_default_catalogue() -> None:
    m = load_reference_profiles()["objectdetection"]["gpu"].inference
    d = scale(1000, m, m.latency(1, 10.0) * 3, GPU)
    assert d.feasible and d.config.startswith("gpu-")
    assert d.instances * d.batch >= 1000
