"""The clairvoyant lower bound: its arithmetic on a case worked by hand, and the property that
no policy's simulated cost is ever below it (for the requests that met the SLA in that run;
for a run without violations, all of them)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smiless.catalogue import Kind, load_catalogue
from smiless.policy.workflow import Dag
from smiless.sim import (
    POLICIES,
    Noise,
    PolicyContext,
    SimApp,
    Workload,
    load_app,
    lower_bound,
    make_policy,
    simulate,
)
from smiless.sim.lowerbound import best_chain, function_bounds
from tests.unit.sim.helpers import diamond, exact_profile

CATALOGUE = load_catalogue()
ONE_CPU = {"cpu-1": CATALOGUE["cpu-1"], "cpu-2": CATALOGUE["cpu-2"]}


def test_bound_by_hand() -> None:
    """One function, T(1, 1 core) = 0.5 s, T(1, 2 cores) = 0.3 s, init 2 s, SLA 1 s: both
    configs are allowed, p = cpu-1's price, s = 0.3, I = 2, slack = 1 - 0.3 = 0.7. Arrivals at
    0, 0.5, 10 and 11: gaps after slack are 0, 9.3 (capped at s + I = 2.3) and 0.3."""
    prof = {"f": {"cpu": exact_profile(Kind.CPU, 0.4, 1.0, 0.1, 2.0)}}
    app = SimApp("one", 1.0, Dag.of(["f"], []), prof)
    (_p, s, init, slack, m) = function_bounds(app, ONE_CPU, Noise.exact())["f"]  # type: ignore[misc]
    assert (s, init) == pytest.approx((0.3, 2.0))
    assert slack == pytest.approx(0.7)
    p = CATALOGUE["cpu-1"].price_per_second
    # a request adds 0.4 s to a batch on cpu-1 (price p), 0.2 s on cpu-2 (price 2p): m = 0.4p
    assert m == pytest.approx(0.4 * p)
    # chain 2.3 + 0 + 2.3 + 0.3 = 4.9 beats the work term 2 + max(4 x 0.4, 0.3) = 3.6
    expected = p * (2.3 + 0.0 + 2.3 + 0.3)
    assert lower_bound(app, [0.0, 0.5, 10.0, 11.0], ONE_CPU, Noise.exact()) == pytest.approx(expected)
    # 20 requests at once are one point of a chain (2.3), but their work is 2 + 20 x 0.4 = 10
    assert lower_bound(app, [0.0] * 20, ONE_CPU, Noise.exact()) == pytest.approx(10.0 * p)
    # with a warm-up the first init may fall before the window: only min(I, a_1) of it counts
    warm = lower_bound(app, [0.0, 0.5, 10.0, 11.0], ONE_CPU, Noise.exact(), warmup_s=15.0)
    assert warm == pytest.approx(expected - 2.0 * p)
    late = lower_bound(app, [1.5, 2.0, 11.5, 12.5], ONE_CPU, Noise.exact(), warmup_s=15.0)
    assert late == pytest.approx(expected - 0.5 * p)


def test_a_chain_keeps_the_spread_of_frequent_arrivals() -> None:
    """Arrivals every 2 s with 3 s of slack: adjacent pairs bound nothing, but the chain
    2 -> 8 -> 14 -> 20 (or 0 -> 6 -> 12 -> 18) is 6 s apart each link: 3 x min(6 - 3, K = 2.3)."""
    times = [float(t) for t in range(0, 21, 2)]
    assert best_chain(times, 3.0, 2.3) == pytest.approx(3 * 2.3)
    assert best_chain(times, 0.5, 2.3) == pytest.approx(10 * 1.5)  # every link: 2 - 0.5
    assert best_chain([5.0], 1.0, 2.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 100), min_size=1, max_size=9, unique=True), st.floats(0, 5), st.floats(0.1, 5))
def test_best_chain_is_the_best_of_every_chain(times: list[float], slack: float, cap: float) -> None:
    import itertools

    ts = sorted(times)
    brute = 0.0
    for r in range(1, len(ts) + 1):
        for chain in itertools.combinations(ts, r):
            v = sum(min(max(0.0, b - a - slack), cap) for a, b in itertools.pairwise(chain))
            brute = max(brute, v)
    assert best_chain(ts, slack, cap) == pytest.approx(brute)


def test_unreachable_sla_bounds_nothing_and_a_tighter_sla_bounds_more() -> None:
    app = diamond(3.0)
    times = [float(t) for t in range(0, 200, 7)]
    loose = lower_bound(app.with_sla(6.0), times, CATALOGUE, Noise())
    tight = lower_bound(app.with_sla(1.0), times, CATALOGUE, Noise())
    assert tight > loose > 0.0
    assert lower_bound(app.with_sla(0.01), times, CATALOGUE, Noise()) == 0.0


APP = load_app("image-query")
# the smiless family with a cheap predictor (the LSTM is exercised by the benchmark)
CHEAP = {"smiless": "moving-average", "smiless-homo": "last-value", "smiless-no-dag": "moving-average"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(sorted(POLICIES)),
    sla=st.sampled_from([1.0, 2.0, 4.0, 6.0]),
    seed=st.integers(0, 2**16),
    spread=st.sampled_from(["together", "poisson"]),
    noisy=st.booleans(),
    burst=st.sampled_from([6, 20]),
    warmup=st.sampled_from([0.0, 15.0, 120.0]),
)
def test_no_policy_beats_the_bound(
    policy: str, sla: float, seed: int, spread: str, noisy: bool, burst: int, warmup: float
) -> None:
    rng = np.random.default_rng(seed)
    busy = rng.uniform(0.1, 0.7)
    # up to 19 invocations a minute: the work term binds where many come together
    counts = (rng.uniform(size=140) < busy) * rng.integers(1, burst, size=140)
    wl = Workload(counts.astype(np.int64), 70, 2.0, spread, seed)  # type: ignore[arg-type]
    app = APP.with_sla(sla)
    noise = Noise(0.1) if noisy else Noise.exact()
    kwargs = {"predictor": CHEAP[policy]} if policy in CHEAP else {}
    pol = make_policy(policy, PolicyContext(app, wl, CATALOGUE, noise), **kwargs)
    a = simulate([(app, wl, pol)], CATALOGUE, noise=noise, seed=seed, warmup_s=warmup).apps[0]
    assert a.cost >= lower_bound(app, a.met_arrivals, CATALOGUE, noise, warmup_s=warmup) * (1 - 1e-9)
    if a.violations == 0:
        everyone = [t for t, _, n in wl.arrival_groups() for _ in range(n)]
        assert a.cost >= lower_bound(app, everyone, CATALOGUE, noise, warmup_s=warmup) * (1 - 1e-9)
