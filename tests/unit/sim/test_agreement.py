"""The simulator and the planner agree where the model is exact: no noise, σ = 0 inits, and
the oracle's true forecast, so every stage is pre-warmed to be ready exactly when its inputs
come and stopped right after serving. Then the simulated cost is the planner's predicted
cost per invocation times the invocations, and every latency is the planned one."""

from __future__ import annotations

import dataclasses
import math

import pytest

from smiless.catalogue import load_catalogue
from smiless.policy.costmodel import Forecast, Mode
from smiless.policy.search import DEFAULT_HEADROOM, fast_plan
from smiless.sim import Noise, PolicyContext, make_policy, simulate
from smiless.sim.forecasts import shift
from tests.unit.sim.helpers import diamond, periodic

CATALOGUE = load_catalogue()


@pytest.mark.parametrize(("every", "sla"), [(10, 3.0), (7, 1.2), (25, 6.0)])
def test_simulated_cost_equals_predicted_cost(every: int, sla: float) -> None:
    app = diamond(sla)
    # history ends 5 minutes (10 s) before the first simulated arrival: every pre-warm lies
    # inside the simulated window
    wl = periodic(every, minutes=every * 30, start=every - 5)
    it = every * wl.slot_s
    plan = fast_plan(
        app.dag.functions,
        app.dag.edges,
        sla,
        app.profiles,
        CATALOGUE,
        Forecast(it, 1, 0.0),
        headroom=DEFAULT_HEADROOM,  # as the simulator's smiless policies plan
    )
    assert plan.feasible
    assert all(fp.mode is Mode.PREWARM for fp in plan.functions.values())
    noise = Noise.exact()
    pol = make_policy("oracle", PolicyContext(app, wl, CATALOGUE, noise))
    res = simulate([(app, wl, pol)], CATALOGUE, noise=noise)
    a = res.apps[0]
    assert a.invocations == wl.invocations > 20
    assert a.cost == pytest.approx(plan.cost * a.invocations, rel=1e-9)
    assert a.cold_starts == 0
    assert max(a.latencies) == pytest.approx(plan.latency_s, rel=1e-9)
    assert min(a.latencies) == pytest.approx(plan.latency_s, rel=1e-9)


def test_noise_breaks_the_agreement() -> None:
    """The check above can fail: with init noise the same run costs something else."""
    app = diamond(3.0)
    wl = periodic(10, minutes=300, start=5)
    plan = fast_plan(app.dag.functions, app.dag.edges, 3.0, app.profiles, CATALOGUE, Forecast(20.0, 1, 0.0))
    noisy = Noise(0.2, True)
    pol = make_policy("oracle", PolicyContext(app, wl, CATALOGUE, noisy))
    a = simulate([(app, wl, pol)], CATALOGUE, noise=noisy, seed=3).apps[0]
    assert a.cost != pytest.approx(plan.cost * a.invocations, rel=1e-6)


@pytest.mark.parametrize(("it", "count"), [(20.0, 1), (3.0, 4), (60.0, 2), (float("inf"), 1)])
def test_a_cached_plan_moved_in_time_is_the_plan_made_then(it: float, count: int) -> None:
    """The simulator's plan cache plans at 0 and shifts; that must be what planning at `now`
    gives (prewarm_at_s is the only field that depends on now)."""
    app = diamond(3.0)
    forecast = Forecast(it, count, 5.0)
    base = fast_plan(app.dag.functions, app.dag.edges, 3.0, app.profiles, CATALOGUE, forecast, 0.0)
    direct = fast_plan(app.dag.functions, app.dag.edges, 3.0, app.profiles, CATALOGUE, forecast, 1234.5)
    moved = shift(base, 1234.5)
    assert moved.now == direct.now
    for f, fp in direct.functions.items():
        got = moved.functions[f]
        if fp.prewarm_at_s is None or not math.isfinite(fp.prewarm_at_s):
            assert got.prewarm_at_s == fp.prewarm_at_s
        else:
            assert got.prewarm_at_s == pytest.approx(fp.prewarm_at_s)
        assert dataclasses.replace(got, prewarm_at_s=fp.prewarm_at_s) == fp
