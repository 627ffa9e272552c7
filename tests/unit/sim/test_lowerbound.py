"""The clairvoyant lower bound: its arithmetic on a case worked by hand, and the property that
no policy's simulated cost is ever below it (for the requests that met the SLA in that run;
for a run without violations, all of them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smiless.catalogue import Kind, load_catalogue
from smiless.dag import Dag
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
from smiless.sim.lowerbound import FunctionBound, best_chain, function_bounds
from tests.unit.sim.helpers import diamond, exact_profile

CATALOGUE = load_catalogue()
ONE_CPU = {"cpu-1": CATALOGUE["cpu-1"], "cpu-2": CATALOGUE["cpu-2"]}


def test_bound_by_hand() -> None:
    """One function, T(1, 1 core) = 0.5 s, T(1, 2 cores) = 0.3 s, init 2 s, SLA 1 s: both
    configs are allowed (cpu-2 at twice cpu-1's price p), slack = 1 - 0.3 = 0.7. A link d long
    costs at least p·min(d, 0.5 + 2) (one cpu-1 instance serves both ends; cpu-2's
    2p·min(d, 2.3) and two instances, min(p·0.5, 2p·0.3) + p·2, cost more). Arrivals at 0,
    0.5, 10 and 11: links after slack are 0, 9.3 (capped at 2.5) and 0.3."""
    prof = {"f": {"cpu": exact_profile(Kind.CPU, 0.4, 1.0, 0.1, 2.0)}}
    app = SimApp("one", 1.0, Dag.of(["f"], []), prof)
    b = function_bounds(app, ONE_CPU, Noise.exact())["f"]
    assert b is not None
    p = CATALOGUE["cpu-1"].price_per_second
    assert b.slack == pytest.approx(0.7)
    assert (b.first(), b.last) == pytest.approx((2.0 * p, 0.5 * p))
    assert b.link(9.3) == pytest.approx(2.5 * p) and b.link(0.3) == pytest.approx(0.3 * p)
    # a request adds 0.4 s to a batch on cpu-1 (price p), 0.2 s on cpu-2 (price 2p): m = 0.4p
    assert b.m == pytest.approx(0.4 * p)
    # chain 2 + 0.5 + (0 + 2.5 + 0.3) = 5.3 beats the work term 2 + max(4 x 0.4, 0.5) = 3.6
    expected = p * 5.3
    assert lower_bound(app, [0.0, 0.5, 10.0, 11.0], ONE_CPU, Noise.exact()) == pytest.approx(expected)
    # 20 requests at once are one point of a chain (2.5), but their work is 2 + 20 x 0.4 = 10
    assert lower_bound(app, [0.0] * 20, ONE_CPU, Noise.exact()) == pytest.approx(10.0 * p)
    # with a warm-up the first init may fall before the window: only min(I, a_1) of it counts
    warm = lower_bound(app, [0.0, 0.5, 10.0, 11.0], ONE_CPU, Noise.exact(), warmup_s=15.0)
    assert warm == pytest.approx(expected - 2.0 * p)
    late = lower_bound(app, [1.5, 2.0, 11.5, 12.5], ONE_CPU, Noise.exact(), warmup_s=15.0)
    assert late == pytest.approx(expected - 0.5 * p)


def _capped(cap: float) -> Callable[[float], float]:
    return lambda d: min(d, cap)


def test_a_chain_keeps_the_spread_of_frequent_arrivals() -> None:
    """Arrivals every 2 s with 3 s of slack: adjacent pairs bound nothing, but the chain
    2 -> 8 -> 14 -> 20 (or 0 -> 6 -> 12 -> 18) is 6 s apart each link: 3 x min(6 - 3, K = 2.3)."""
    times = [float(t) for t in range(0, 21, 2)]
    assert best_chain(times, 3.0, _capped(2.3), 2.3) == pytest.approx(3 * 2.3)
    assert best_chain(times, 0.5, _capped(2.3), 2.3) == pytest.approx(10 * 1.5)  # every link: 2 - 0.5
    assert best_chain([5.0], 1.0, _capped(2.0), 2.0) == 0.0


ROWS = st.lists(
    st.tuples(st.floats(0.01, 3.0), st.floats(0.01, 3.0), st.floats(0.0, 6.0)), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 100), min_size=1, max_size=9, unique=True),
    st.floats(0, 5),
    ROWS,
)
def test_best_chain_is_the_best_of_every_chain(
    times: list[float], slack: float, rows: list[tuple[float, float, float]]
) -> None:
    import itertools

    b = FunctionBound.of(slack, rows, 0.0)
    ts = sorted(times)
    brute = 0.0
    for r in range(1, len(ts) + 1):
        for chain in itertools.combinations(ts, r):
            v = sum(b.link(max(0.0, y - x - slack)) for x, y in itertools.pairwise(chain))
            brute = max(brute, v)
    assert best_chain(ts, slack, b.link, b.reach) == pytest.approx(brute)


@settings(max_examples=200, deadline=None)
@given(ROWS, st.floats(0.0, 20.0))
def test_a_link_costs_what_its_cheapest_instances_could(
    rows: list[tuple[float, float, float]], d: float
) -> None:
    """L(d) is the least over every way to serve a link's two ends: one instance of any config,
    or two of any configs (brute force over the rows); it never falls below the bound that
    mixes the cheapest price with the shortest service and init, and stops growing at `reach`."""
    b = FunctionBound.of(0.0, rows, 0.0)
    one = min(p * min(d, s + i) for p, s, i in rows)
    two = min(p * min(d, s) + q * min(d, j) for p, s, _ in rows for q, _, j in rows)
    assert b.link(d) == pytest.approx(min(one, two))
    p0, s0, i0 = (min(r[k] for r in rows) for k in range(3))
    assert b.link(d) >= p0 * min(d, s0 + i0) * (1 - 1e-9)
    assert b.link(b.reach + d) == pytest.approx(b.link(b.reach))


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
