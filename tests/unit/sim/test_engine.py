"""The event loop's semantics: determinism, DAG order and fan-in, batching, on-demand starts
and cold starts, cost through smiless.accounting."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from smiless.accounting import total_cost
from smiless.catalogue import load_catalogue
from smiless.policy.controller import Decision, InstanceView, StopInstance
from smiless.policy.workflow import timing
from smiless.sim import Noise, Policy, PolicyContext, Workload, make_policy, simulate
from tests.unit.sim.helpers import diamond, periodic

CATALOGUE = load_catalogue()


class Fixed(Policy):
    """Test policy: every function on `config` with `batch`; instances stop after `keep_s` idle."""

    name = "fixed"

    def __init__(
        self, ctx: PolicyContext, config: str = "cpu-1", batch: int = 1, keep_s: float = 1e9
    ) -> None:
        super().__init__(ctx)
        self.config, self.batch, self.keep_s = config, batch, keep_s
        self.served: list[tuple[str, int]] = []

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        stops = [
            StopInstance(v.id, v.function, "idle")
            for v in instances
            if v.ready and v.idle_since is not None and now - v.idle_since >= self.keep_s
        ]
        return Decision((), tuple(stops), now + self.keep_s if instances else float("inf"))

    def shape(self, function: str) -> tuple[str, int]:
        return self.config, self.batch

    def on_served(self, now: float, function: str, batch: int) -> None:
        self.served.append((function, batch))


def run(wl: Workload, noise: Noise, seed: int = 0, **kw: object) -> tuple[object, Fixed]:
    app = diamond(3.0)
    pol = Fixed(PolicyContext(app, wl, CATALOGUE, noise), **kw)  # type: ignore[arg-type]
    return simulate([(app, wl, pol)], CATALOGUE, noise=noise, seed=seed), pol


def test_same_seed_same_run_other_seed_other_run() -> None:
    wl = Workload(np.array([0, 3, 0, 1, 2, 0, 0, 4] * 10, dtype=np.int64), 8, 2.0, "poisson", 1)
    a1 = run(wl, Noise(), seed=5)[0].apps[0]  # type: ignore[attr-defined]
    a2 = run(wl, Noise(), seed=5)[0].apps[0]  # type: ignore[attr-defined]
    a3 = run(wl, Noise(), seed=6)[0].apps[0]  # type: ignore[attr-defined]
    assert a1.latencies == a2.latencies and a1.cost == a2.cost
    assert a1.latencies != a3.latencies


def test_every_request_passes_every_stage_after_its_parents() -> None:
    """Warm instances, no noise: each request's latency is the DAG's longest path of warm
    latencies, plus what it waited; never less."""
    wl = periodic(5, 200, 5)
    res, pol = run(wl, Noise.exact())
    a = res.apps[0]  # type: ignore[attr-defined]
    app = diamond(3.0)
    lat = {f: app.profiles[f]["cpu"].inference.latency(1, 1.0) for f in app.functions}
    longest = timing(app.dag, lat).latency_s
    assert a.invocations == len(a.latencies) == wl.invocations
    assert min(a.latencies) >= longest - 1e-9
    # after the first (cold) request, instances stay warm: later requests take exactly the path
    assert a.latencies[-1] == pytest.approx(longest)
    assert sorted({f for f, _ in pol.served}) == sorted(app.functions)
    assert a.cold_starts == len(app.functions)  # only the first request waited, once per stage


def test_a_burst_is_batched_and_the_rest_scales_out() -> None:
    """7 invocations at once, batch 3: three instances per stage (3 + 3 + 1)."""
    c = np.zeros(30, dtype=np.int64)
    c[10] = 7
    res, pol = run(Workload(c, 5), Noise.exact(), batch=3)
    a = res.apps[0]  # type: ignore[attr-defined]
    per_entry = sorted(b for f, b in pol.served if f == "a")
    assert per_entry == [1, 3, 3]
    assert len({lt.instance_id for lt in a.lifetimes if lt.function == "a"}) == 3
    # all 7 wait at the entry; downstream, inputs that come after an on-demand start is ready do not
    assert 7 < a.cold_starts <= 7 * 4


def test_cost_is_the_accounting_of_the_lifetimes() -> None:
    wl = periodic(3, 120, 3, count=2)
    res, _ = run(wl, Noise(), keep_s=4.0)
    a = res.apps[0]  # type: ignore[attr-defined]
    assert a.cost == total_cost(a.lifetimes, 0.0, a.end_s, a.end_s)
    assert a.end_s == pytest.approx(wl.duration_s + 4 * 3.0)
    # stopped after 4 s idle with arrivals 6 s apart: many lifetimes, all closed but the last ones
    assert len(a.lifetimes) > wl.invocations // 2
    assert all(lt.stop is None or lt.stop >= lt.start for lt in a.lifetimes)


def test_the_breakdown_adds_up() -> None:
    """Init + busy + idle is the instances' cost (all stopped inside the window here); idle
    by stop reason, cold starts by start reason and violations by cause add up to their
    totals; every start and stop is counted once."""
    wl = periodic(3, 120, 3, count=3)
    app = diamond(1.0)  # tight: cold starts violate
    pol = Fixed(PolicyContext(app, wl, CATALOGUE, Noise()), keep_s=2.0)
    a = simulate([(app, wl, pol)], CATALOGUE, noise=Noise()).apps[0]
    b = a.breakdown
    assert a.violations > 0 and a.cold_starts > 0
    assert all(lt.stop is not None for lt in a.lifetimes)
    assert b.init_cost + b.busy_cost + sum(b.idle_cost.values()) == pytest.approx(a.cost, rel=1e-9)
    assert sum(b.cost_by_function.values()) == pytest.approx(a.cost, rel=1e-9)
    assert set(b.idle_cost) == {"idle"} and b.stops == {"idle": len(a.lifetimes)}
    assert b.starts == {"on demand": len(a.lifetimes)}  # Fixed never starts: the gateway does
    assert b.cold_starts == {"on demand": a.cold_starts}
    assert sum(b.violations.values()) == a.violations
    d = b.as_dict()
    assert d["idle_cost"] == pytest.approx(b.idle_cost["idle"])


def test_many_apps_share_one_loop() -> None:
    app = diamond(3.0)
    wls = [periodic(4 + i, 100, 10) for i in range(4)]
    entries = []
    shared: dict[object, object] = {}
    for i, wl in enumerate(wls):
        a = app.renamed(f"d{i}")
        entries.append(
            (a, wl, make_policy("keepalive-10min", PolicyContext(a, wl, CATALOGUE, Noise(), shared)))
        )
    res = simulate(entries, CATALOGUE, seed=1)
    assert [r.invocations for r in res.apps] == [wl.invocations for wl in wls]
    assert res.events > sum(wl.invocations for wl in wls)
    assert all(lt.app == r.app for r in res.apps for lt in r.lifetimes)


def test_a_policy_cannot_start_an_unknown_config() -> None:
    with pytest.raises(ValueError, match="unknown config"):
        run(periodic(5, 40, 5), Noise.exact(), config="cpu-3")


def test_the_oracle_sizes_for_a_burst_that_follows_the_next_arrival_within_an_init() -> None:
    """One request, then 13 a slot (2 s) later, every 5 minutes: the plan made at the single
    request cannot pre-warm for the burst, so the oracle's forecast before the single one
    already carries the burst's count; beyond the horizon it does not."""
    from smiless.policy.costmodel import Forecast
    from smiless.sim.forecasts import truth_timeline

    c = np.zeros(40, dtype=np.int64)
    c[4::5] = 1
    c[5::5] = 13
    wl = Workload(c, 10, 2.0)
    plain = truth_timeline(wl)
    ahead = truth_timeline(wl, horizon_s=3.0)  # two slots: the single request and the burst
    assert plain[10].count == 1 and plain[10].it_s == pytest.approx(8.0)  # next: minute 14
    assert ahead[10].count == 13 and ahead[10].it_s == pytest.approx(8.0)
    assert ahead[14] == Forecast(2.0, 13, 0.0, 2.0)  # the burst itself is next
    assert ahead[15] == Forecast(8.0, 13, 0.0, 2.0)  # after it: the next pair, minutes 19-20
    short = truth_timeline(wl, horizon_s=1.0)  # within the next slot only
    assert short[10].count == 1


def test_a_warmup_lets_the_first_arrival_meet_a_warm_instance_and_is_not_charged() -> None:
    """The first simulated slot has an arrival at t = 0: started at 0, no policy can have an
    instance ready for it; started a warm-up earlier, the oracle does, and the cost window
    still opens at 0 (no lifetime is charged before it)."""
    from smiless.accounting import cost

    app = diamond(3.0)
    wl = periodic(10, minutes=200, start=10)  # arrivals at minutes 0, 10, ...: t = 0 is one
    noise = Noise.exact()

    def run(warmup_s: float) -> tuple[int, float, list[float]]:
        pol = make_policy("oracle", PolicyContext(app, wl, CATALOGUE, noise))
        a = simulate([(app, wl, pol)], CATALOGUE, noise=noise, warmup_s=warmup_s).apps[0]
        first = [lat for t, lat in zip(a.arrivals, a.latencies, strict=True) if t == 0.0]
        before = sum(cost(x, -warmup_s, 0.0, a.end_s) for x in a.lifetimes)
        assert a.cost == pytest.approx(total_cost(a.lifetimes, 0.0, a.end_s, a.end_s))
        return a.cold_starts, before, first

    cold, _, first = run(0.0)
    assert cold > 0 and max(first) > 3.0
    cold, before, first = run(60.0)
    assert cold == 0 and max(first) <= 3.0
    assert before > 0.0  # instances did run before the window: they are just not charged
    with pytest.raises(ValueError, match="warmup_s"):
        simulate([], CATALOGUE, warmup_s=-1.0)
