"""Every simulated policy: smiless and its ablations, the baselines, and the registry.

**smiless** = the optimizer service's loop: on each arrival, forecast (the SMIless predictor's
prediction for the history so far) and re-plan with `sla_aware_plan` (the fast search); at
every event and at the wake-up it asks for, `smiless.policy.controller.decide` on that plan.
Both are imported, not re-implemented. Variants: `smiless-homo` plans on the CPU configs
only; `smiless-no-dag` pre-warms every stage as if it were the entry (its `prewarm_at_s` moved
back by its ready offset: the reference's ablation, which ignores the cascade); `oracle` is
smiless fed the true next IT and the largest true count within an init after it (reads the future on purpose;
`forecasts.truth_timeline` says why the horizon).

The controller is told, per function, the invocations in flight (arrived, not yet served
there: `SmilessPolicy.inflight`), as the optimizer service would count them from the
gateway's records: a plan made at an arrival times the next one, and the in-flight count is
what keeps the window of the requests still on their way open (`controller.decide`).

**Baselines**, as their papers describe them (docs/smiless-reference.md §7 (a)), without the
reference artifact's bugs; each simplification is listed in the class docstring. Where a
baseline is a cold-start policy only (`keepalive-10min`, `hybrid-histogram`) it runs every
function on the configs and batch sizes of a *static* smiless plan made once from the
training part's statistics (mean IT, 95th-percentile count), so the comparison isolates the
cold-start policy.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.controller import (
    ControllerContext,
    Decision,
    InstanceView,
    StartInstance,
    StopInstance,
    decide,
)
from smiless.policy.costmodel import Forecast
from smiless.policy.ondemand import on_demand_shape
from smiless.policy.predictors import burst_span, fft_extrapolate
from smiless.policy.search import DEFAULT_HEADROOM, Plan, sla_aware_plan
from smiless.policy.workflow import all_paths, timing
from smiless.sim.forecasts import (
    PlanCache,
    last_arrival_minute,
    prediction_timeline,
    truth_timeline,
)
from smiless.sim.model import SimApp, profile_on
from smiless.sim.policy import Policy, PolicyContext

_NOTHING = Decision((), (), math.inf)


# --- smiless ------------------------------------------------------------------------------------


def _fast(app: SimApp, catalogue: Mapping[str, HardwareConfig], forecast: Forecast) -> Plan:
    return sla_aware_plan(
        app.dag.functions,
        app.dag.edges,
        app.sla_s,
        app.profiles,
        catalogue,
        forecast,
        headroom=DEFAULT_HEADROOM,
    )


def _cpu_only(catalogue: Mapping[str, HardwareConfig]) -> dict[str, HardwareConfig]:
    return {n: c for n, c in catalogue.items() if c.kind is Kind.CPU}


def _plan_cache(ctx: PolicyContext, variant: str, catalogue: Mapping[str, HardwareConfig]) -> PlanCache:
    """One cache per (app template, SLA, catalogue variant), shared across apps and runs."""
    app = ctx.app
    key = ("plans", app.template or app.name, app.sla_s, variant, tuple(sorted(catalogue)))
    cache = ctx.shared.get(key)
    if cache is None:
        cache = ctx.shared[key] = PlanCache(_fast, app, catalogue)
    assert isinstance(cache, PlanCache)
    return cache


_RECENT_ARRIVALS = 512
"""Arrival times a smiless policy keeps to measure how spread a burst is."""


class SmilessPolicy(Policy):
    """Re-plan on each arrival with the predictor's forecast; the controller times the rest."""

    name = "smiless"
    predictor: ClassVar[str] = "smiless"
    homogeneous: ClassVar[bool] = False
    no_dag: ClassVar[bool] = False
    oracle: ClassVar[bool] = False

    def __init__(self, ctx: PolicyContext, predictor: str | None = None) -> None:
        super().__init__(ctx)
        wl = ctx.workload
        catalogue = _cpu_only(ctx.catalogue) if self.homogeneous else ctx.catalogue
        self.cache = _plan_cache(ctx, "cpu" if self.homogeneous else "all", catalogue)
        kind = predictor or self.predictor
        if self.oracle:
            self.forecasts: dict[int, Forecast] = truth_timeline(wl, _longest_init(ctx.app, catalogue))
        else:
            preds = prediction_timeline(wl, kind, ctx.shared)
            self.forecasts = {m: Forecast.from_slots(p, wl.slot_s) for m, p in preds.items()}
        self.minute = -1
        self.active = False
        self.previous: Plan | None = None
        """The plan the current one replaced: it sized the requests in flight."""
        self.inflight = dict.fromkeys(ctx.app.functions, 0)
        """Per function: invocations that have arrived but not yet been served there."""
        self.arrived = 0
        """Invocations that have arrived since the current plan was made (its burst)."""
        self.recent: deque[float] = deque(maxlen=_RECENT_ARRIVALS)
        """When the latest arrivals came: how spread a burst is (`burst_span`)."""
        last = last_arrival_minute(wl, wl.start_minute - 1) if wl.start_minute > 0 else None
        if last is not None:  # the service starts with history: plan from it right away
            self.active = True
            self.minute = wl.start_minute - 1
            self.plan = self._plan(self.forecasts[self.minute], wl.time_of(last))
        else:
            self.plan = self._plan(Forecast(math.inf), 0.0)

    def _plan(self, forecast: Forecast, now: float) -> Plan:
        plan = self.cache.plan(forecast, now)
        if self.no_dag:
            plan = _as_entry(plan)
        return plan

    def on_arrival(self, now: float, minute: int, count: int) -> None:
        self.active = True
        for f in self.inflight:
            self.inflight[f] += count
        if minute != self.minute:
            self.minute = minute
            self.previous = self.plan
            forecast = self.forecasts[minute]
            if self.recent:  # the slot, until arrivals show how spread a burst is
                span = burst_span(self.recent, self.ctx.workload.slot_s)
                forecast = dataclasses.replace(forecast, burst_s=min(forecast.burst_s, span))
            self.plan = self._plan(forecast, now)
            self.arrived = 0
        self.arrived += count
        self.recent.append(now)

    def on_served(self, now: float, function: str, batch: int) -> None:
        self.inflight[function] -= batch

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        return decide(
            ControllerContext(
                self.plan,
                now,
                instances,
                active=self.active,
                inflight=self.inflight,
                previous=self.previous,
                arrived=self.arrived,
            )
        )

    def shape(self, function: str) -> tuple[str, int]:
        fp = self.plan.functions[function]
        shape = on_demand_shape(fp.instance_config, fp.config, fp.batch)
        assert shape is not None  # every config runs in the simulator
        return shape


def _as_entry(plan: Plan) -> Plan:
    """Every stage pre-warmed for the request's arrival rather than for its inputs."""
    functions = {
        f: fp
        if fp.prewarm_at_s is None or fp.ready_offset_s == 0.0
        else dataclasses.replace(fp, prewarm_at_s=fp.prewarm_at_s - fp.ready_offset_s)
        for f, fp in plan.functions.items()
    }
    return dataclasses.replace(plan, functions=functions)


class SmilessHomoPolicy(SmilessPolicy):
    name = "smiless-homo"
    homogeneous = True


class SmilessNoDagPolicy(SmilessPolicy):
    name = "smiless-no-dag"
    no_dag = True


class OraclePolicy(SmilessPolicy):
    name = "oracle"
    oracle = True


def _longest_init(app: SimApp, catalogue: Mapping[str, HardwareConfig]) -> float:
    """The longest planned init (μ + kσ) of any of the app's functions on any config: the
    oracle's count horizon (`truth_timeline`)."""
    inits = [
        prof.init.bound()
        for f in app.functions
        for cfg in catalogue.values()
        if (prof := profile_on(app, f, cfg)) is not None
    ]
    return max(inits, default=0.0)


# --- shared pieces of the baselines ----------------------------------------------------------


def _history_stats(ctx: PolicyContext) -> tuple[float, int]:
    """Mean IT (s) and 95th-percentile arrival count over the training part."""
    wl = ctx.workload
    hist = wl.counts[: wl.start_minute]
    active = np.flatnonzero(hist)
    if active.size < 2:
        return math.inf, 1
    it = float(np.diff(active).mean()) * wl.slot_s
    count = math.ceil(float(np.quantile(hist[active], 0.95)))
    return it, max(1, count)


def _static_plan(ctx: PolicyContext) -> Plan:
    it, count = _history_stats(ctx)
    return _plan_cache(ctx, "all", ctx.catalogue).plan(Forecast(it, count, 0.0), 0.0)


def _by_function(instances: Sequence[InstanceView]) -> dict[str, list[InstanceView]]:
    out: dict[str, list[InstanceView]] = {}
    for v in instances:
        out.setdefault(v.function, []).append(v)
    return out


def _idle(v: InstanceView) -> bool:
    return v.ready and v.idle_since is not None


def _keep_alive(
    instances: Sequence[InstanceView], keep_s: float, now: float, stops: list[StopInstance]
) -> float:
    """Stop instances idle for `keep_s`; the next expiry."""
    wake = math.inf
    for v in instances:
        if _idle(v):
            assert v.idle_since is not None
            expires = v.idle_since + keep_s
            if now >= expires:
                stops.append(StopInstance(v.id, v.function, "keep-alive expired"))
            else:
                wake = min(wake, expires)
    return wake


def _pool(
    function: str,
    config: str,
    target: int,
    mine: Sequence[InstanceView],
    starts: list[StartInstance],
    stops: list[StopInstance],
    why: str,
) -> None:
    """Bring `function`'s instances to `target`: start the missing ones on `config`, stop idle
    ones beyond it (longest idle first)."""
    live = len(mine)
    for _ in range(target - live):
        starts.append(StartInstance(function, config, why))
    if live > target:
        idle = sorted((v for v in mine if _idle(v)), key=lambda v: v.idle_since or 0.0)
        for v in idle[: live - target]:
            stops.append(StopInstance(v.id, function, "beyond the pool"))


def _window_targets(counts: np.ndarray, start: int, fn: Any) -> np.ndarray:
    """Per simulated minute m, fn(counts of the minutes before m)."""
    n = len(counts) - start
    return np.array([fn(counts[: start + i]) for i in range(n + 1)], dtype=np.int64)


def _p95_latency(paths: Sequence[tuple[str, ...]], lat: Mapping[str, float], cv: float) -> float:
    """P95 of the end-to-end latency with independent normal stage noise of coefficient `cv`:
    per root->leaf path, mean + 1.645 x std of the sum; the worst path."""
    worst = 0.0
    for path in paths:
        mean = sum(lat[f] for f in path)
        std = cv * math.sqrt(sum(lat[f] ** 2 for f in path))
        worst = max(worst, mean + 1.645 * std)
    return worst


def _warm_latency(app: SimApp, f: str, cfg: HardwareConfig) -> float | None:
    prof = profile_on(app, f, cfg)
    return None if prof is None else prof.inference.latency(1, cfg.resource)


def _cheapest_per_use(opts: Sequence[tuple[float, float, str]]) -> int:
    """Index of the (latency, price, name) option with the least price x latency."""
    return min(range(len(opts)), key=lambda j: opts[j][0] * opts[j][1])


def _bundle(app: SimApp, f: str, cfg: HardwareConfig, budget_s: float) -> int:
    prof = profile_on(app, f, cfg)
    assert prof is not None
    return max(1, min(64, prof.inference.max_batch(cfg.resource, budget_s)))


# --- keep-alive, hybrid histogram --------------------------------------------------------------


class KeepAlivePolicy(Policy):
    """A fixed keep-alive (AWS Lambda's ~10 minutes): an instance is started when a request finds
    none and stopped after 10 minutes idle. Configs and batch: the static smiless plan."""

    name = "keepalive-10min"
    keep_s: ClassVar[float] = 600.0

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self.static = _static_plan(ctx)

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        stops: list[StopInstance] = []
        wake = _keep_alive(instances, self.keep_s, now, stops)
        return Decision((), tuple(stops), wake)

    def shape(self, function: str) -> tuple[str, int]:
        fp = self.static.functions[function]
        return fp.instance_config, fp.batch


class HybridHistogramPolicy(Policy):
    """Azure's hybrid histogram policy (Shahrad et al., ATC'20), per app.

    The windows come from `HybridHistogramPredictor` on the app's arrival history (its bins are
    one slot = one trace minute; range 240 slots = 4 trace hours), updated at each arrival:
    after a function's instance finishes, it is unloaded for the pre-warm window, then one
    instance is loaded and kept for the keep-alive window; with a pre-warm window of 0 the
    instance simply stays for the keep-alive window. Simplifications: the app's windows apply
    to each of its functions, counted from that function's own last execution; configs and
    batch are the static smiless plan's."""

    name = "hybrid-histogram"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        wl = ctx.workload
        self.static = _static_plan(ctx)
        self.timeline = prediction_timeline(wl, "hybrid-histogram", ctx.shared)
        self.prewarm_s = 0.0
        self.keep_s = 240 * wl.slot_s
        if wl.start_minute - 1 in self.timeline:
            self._use(self.timeline[wl.start_minute - 1])
        self.last_end: dict[str, float] = {}

    def _use(self, p: Any) -> None:
        slot = self.ctx.workload.slot_s
        self.prewarm_s = float(p.prewarm_slots or 0.0) * slot
        self.keep_s = float(p.keep_alive_slots or 0) * slot

    def on_arrival(self, now: float, minute: int, count: int) -> None:
        p = self.timeline.get(minute)
        if p is not None:
            self._use(p)

    def on_served(self, now: float, function: str, batch: int) -> None:
        self.last_end[function] = now

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        starts: list[StartInstance] = []
        stops: list[StopInstance] = []
        wake = math.inf
        groups = _by_function(instances)
        for f in self.ctx.app.functions:
            mine = groups.get(f, [])
            end = self.last_end.get(f)
            if end is None or self.prewarm_s <= 0.0:
                wake = min(wake, _keep_alive(mine, self.keep_s, now, stops))
                continue
            ws, we = end + self.prewarm_s, end + self.prewarm_s + self.keep_s
            for v in mine:
                if _idle(v) and (now < ws or now >= we):
                    stops.append(StopInstance(v.id, f, "unloaded" if now < ws else "keep-alive expired"))
            if now < ws:
                wake = min(wake, ws)
            elif now < we:
                wake = min(wake, we)
                if not mine:
                    cfg, _ = self.shape(f)
                    starts.append(StartInstance(f, cfg, "pre-load"))
        return Decision(tuple(starts), tuple(stops), wake)

    def shape(self, function: str) -> tuple[str, int]:
        fp = self.static.functions[function]
        return fp.instance_config, fp.batch


# --- IceBreaker -------------------------------------------------------------------------------


class IceBreakerPolicy(Policy):
    """IceBreaker (Roy et al., ASPLOS'22): FFT invocation prediction per window, warm on a
    high-end or low-end server, or not at all, by a utility score.

    - FIP: at each window (one trace minute) the number of invocations is forecast by FFT
      extrapolation (linear detrend, 10 harmonics) of the last 60 windows' counts; that many
      instances are kept warm for the window, idle ones beyond it are released.
    - Placement per function, once, from the training part: utility = mean of (a) the
      high-end speed-up of a cold start plus run, 1 - (init + T) on gpu-10 / on cpu-1, clipped
      to [0, 1]; (b) FIP's hit rate, 1 - Σ max(r - p, 0) / Σ r; (c) its precision,
      1 - Σ max(p - r, 0) / Σ r, clipped to [0, 1]. Utility < 0.33: no warming (cold starts,
      released when idle); < 0.66: warm on the low-end (cpu-1); else on the high-end (gpu-10).
    - Not SLA-aware, no batching, as the paper.
    Simplifications: the memory-footprint term is left out (our catalogue has no image sizes);
    the low-/high-end servers are the reference's cpu-1 and gpu-10 configs."""

    name = "icebreaker"
    low: ClassVar[str] = "cpu-1"
    high: ClassVar[str] = "gpu-10"
    window: ClassVar[int] = 60
    harmonics: ClassVar[int] = 10

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        wl = ctx.workload
        counts = wl.counts

        def fip(c: np.ndarray) -> int:
            if c.size < 3 or not c[-self.window :].any():
                return 0
            return max(0, round(fft_extrapolate(c[-self.window :], self.harmonics)))

        self.targets = _window_targets(counts, wl.start_minute, fip)
        # FIP's accuracy on the training part
        hist = counts[: wl.start_minute]
        p = np.array([fip(hist[:i]) for i in range(self.window, len(hist))], dtype=np.float64)
        r = hist[self.window :].astype(np.float64)
        total = float(r.sum())
        hit = 1.0 - float(np.maximum(r - p, 0).sum()) / total if total > 0 else 0.0
        precision = min(1.0, max(0.0, 1.0 - float(np.maximum(p - r, 0).sum()) / total)) if total > 0 else 0.0
        self.placement: dict[str, str | None] = {}
        cat = ctx.catalogue
        for f in ctx.app.functions:
            lo = profile_on(ctx.app, f, cat[self.low])
            hi = profile_on(ctx.app, f, cat[self.high])
            speedup = 0.0
            if lo is not None and hi is not None:
                t_lo = lo.init.mean + lo.inference.latency(1, cat[self.low].resource)
                t_hi = hi.init.mean + hi.inference.latency(1, cat[self.high].resource)
                speedup = min(1.0, max(0.0, 1.0 - t_hi / t_lo))
            utility = (speedup + hit + precision) / 3.0
            if utility < 0.33 or (hi is None and lo is None):
                self.placement[f] = None
            elif hi is None or (utility < 0.66 and lo is not None):
                self.placement[f] = self.low
            else:
                self.placement[f] = self.high

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        wl = self.ctx.workload
        i = max(0, int(now // wl.slot_s))
        if i >= len(self.targets):  # the trace is over: no more windows
            i = len(self.targets) - 1
            wake = math.inf
        else:
            wake = (i + 1) * wl.slot_s
        starts: list[StartInstance] = []
        stops: list[StopInstance] = []
        groups = _by_function(instances)
        for f in self.ctx.app.functions:
            where = self.placement[f]
            target = int(self.targets[i]) if where is not None else 0
            _pool(f, where or self.low, target, groups.get(f, []), starts, stops, "FIP warm")
        return Decision(tuple(starts), tuple(stops), wake)

    def shape(self, function: str) -> tuple[str, int]:
        return self.placement[function] or self.low, 1


# --- ORION --------------------------------------------------------------------------------------


class OrionPolicy(Policy):
    """ORION (Mahgoub et al., OSDI'22): right-size every stage for a P95 end-to-end target, bundle
    parallel invocations, pre-warm downstream stages to be ready when their inputs come.

    - Right-sizing: best-first from each stage's cheapest pay-per-use config (least price x
      T(1)); while the P95 (per path: mean + 1.645 std with the noise's cv; worst path)
      exceeds the SLA, take the upgrade with the most P95 reduction per unit of cost.
    - Bundling: a stage serves up to as many requests together as fit in its share of the SLA
      (its latency scaled by SLA / P95).
    - Pre-warming: when a request arrives, each downstream stage that will have no instance is
      started at arrival + its ready offset - its P95 init (μ + 1.645σ).
    - Between requests, the platform's keep-alive (Lambda's ~10 minutes); the entry stage is not
      pre-warmed (ORION has no arrival prediction).
    Simplifications: configs are the CPU ones (ORION sizes VMs/memory, not GPU shares); the
    latency distribution is the simulator's noise model, which ORION would profile."""

    name = "orion"
    keep_s: ClassVar[float] = 600.0

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        app = ctx.app
        cv = ctx.noise.inference_cv
        paths = list(all_paths(app.dag))
        ladders: dict[str, list[tuple[float, float, str]]] = {}
        for f in app.functions:
            opts = []
            for cfg in _cpu_only(ctx.catalogue).values():
                t = _warm_latency(app, f, cfg)
                if t is not None:
                    opts.append((t, cfg.price_per_second, cfg.name))
            if not opts:
                raise ValueError(f"orion: {f} has no CPU profile")
            opts.sort(key=lambda o: -o[0])  # slowest first
            ladders[f] = opts
        choice = {f: _cheapest_per_use(o) for f, o in ladders.items()}

        def lat(ch: Mapping[str, int]) -> dict[str, float]:
            return {f: ladders[f][j][0] for f, j in ch.items()}

        p95 = _p95_latency(paths, lat(choice), cv)
        while p95 > app.sla_s:
            best: tuple[float, str, int] | None = None
            for f, j in choice.items():
                for k in range(j + 1, len(ladders[f])):
                    trial = {**choice, f: k}
                    gain = p95 - _p95_latency(paths, lat(trial), cv)
                    if gain <= 0:
                        continue
                    extra = ladders[f][k][0] * ladders[f][k][1] - ladders[f][j][0] * ladders[f][j][1]
                    score = gain / max(extra, 1e-15)
                    if best is None or score > best[0]:
                        best = (score, f, k)
            if best is None:
                break
            choice[best[1]] = best[2]
            p95 = _p95_latency(paths, lat(choice), cv)
        latency = lat(choice)
        scale = app.sla_s / p95 if p95 > 0 else 1.0
        self.configs = {f: ladders[f][j][2] for f, j in choice.items()}
        self.batch = {
            f: _bundle(app, f, ctx.catalogue[self.configs[f]], latency[f] * max(scale, 1.0))
            for f in app.functions
        }
        self.offset = dict(timing(app.dag, latency).ready_offset)
        self.init_p95 = {}
        for f in app.functions:
            prof = profile_on(app, f, ctx.catalogue[self.configs[f]])
            assert prof is not None
            self.init_p95[f] = prof.init.mean + 1.645 * prof.init.std
        self.pending: list[tuple[float, str, int]] = []

    def on_arrival(self, now: float, minute: int, count: int) -> None:
        for f in self.ctx.app.functions:
            if self.ctx.app.dag.parents[f]:  # downstream stages only
                need = -(-count // self.batch[f])
                self.pending.append((now + self.offset[f] - self.init_p95[f], f, need))

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        stops: list[StopInstance] = []
        starts: list[StartInstance] = []
        wake = _keep_alive(instances, self.keep_s, now, stops)
        if self.pending:
            groups = _by_function(instances)
            later = []
            for t, f, need in self.pending:
                if t > now:
                    later.append((t, f, need))
                    wake = min(wake, t)
                    continue
                have = sum(1 for v in groups.get(f, []) if not v.ready or v.idle_since is not None)
                have += sum(1 for s in starts if s.function == f)
                for _ in range(need - have):
                    starts.append(StartInstance(f, self.configs[f], "pre-warm downstream"))
            self.pending = later
        return Decision(tuple(starts), tuple(stops), wake)

    def shape(self, function: str) -> tuple[str, int]:
        return self.configs[function], self.batch[function]


# --- Aquatope -----------------------------------------------------------------------------------


class AquatopePolicy(Policy):
    """Aquatope (Zhou et al., ASPLOS'23): a pre-warmed container pool sized conservatively under
    uncertainty, and per-function resources from constrained Bayesian optimisation.

    - Resources: the configs (CPU and GPU) that minimise the pay-per-use cost Σ price x T(1)
      subject to the P95 end-to-end latency (as ORION's, with the noise's cv) within the SLA,
      found exactly (exhaustive over each function's cost/latency Pareto front). BO converges
      towards this optimum; using the optimum itself is in Aquatope's favour.
    - Pool: at each window (trace minute) the pool of every function is the 95th percentile of
      the invocations per window over the last 60 windows (rounded up): an uncertainty-aware
      upper forecast in place of the paper's Bayesian LSTM; pool instances are kept warm, idle
      ones beyond the pool are released.
    - No batching."""

    name = "aquatope"
    window: ClassVar[int] = 60
    quantile: ClassVar[float] = 0.95

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        app = ctx.app
        cv = ctx.noise.inference_cv
        paths = list(all_paths(app.dag))
        fronts: dict[str, list[tuple[float, float, str]]] = {}
        for f in app.functions:
            opts = []
            for cfg in ctx.catalogue.values():
                t = _warm_latency(app, f, cfg)
                if t is not None:
                    opts.append((t * cfg.price_per_second, t, cfg.name))
            opts.sort()
            front: list[tuple[float, float, str]] = []
            for o in opts:
                if not front or o[1] < front[-1][1]:
                    front.append(o)
            fronts[f] = front
        names = list(app.functions)
        best: tuple[float, tuple[tuple[float, float, str], ...]] | None = None
        fastest: tuple[tuple[float, float, str], ...] = tuple(fronts[f][-1] for f in names)
        for combo in itertools.product(*(fronts[f] for f in names)):
            cost = sum(c[0] for c in combo)
            if best is not None and cost >= best[0]:
                continue
            if _p95_latency(paths, {f: c[1] for f, c in zip(names, combo, strict=True)}, cv) <= app.sla_s:
                best = (cost, combo)
        chosen = best[1] if best is not None else fastest
        self.configs = {f: c[2] for f, c in zip(names, chosen, strict=True)}
        wl = ctx.workload

        def pool(c: np.ndarray) -> int:
            w = c[-self.window :]
            if w.size == 0 or not w.any():
                return 0
            return math.ceil(float(np.quantile(w, self.quantile)))

        self.targets = _window_targets(wl.counts, wl.start_minute, pool)

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        wl = self.ctx.workload
        i = max(0, int(now // wl.slot_s))
        if i >= len(self.targets):  # the trace is over: no more windows
            i = len(self.targets) - 1
            wake = math.inf
        else:
            wake = (i + 1) * wl.slot_s
        target = int(self.targets[i])
        starts: list[StartInstance] = []
        stops: list[StopInstance] = []
        groups = _by_function(instances)
        for f in self.ctx.app.functions:
            _pool(f, self.configs[f], target, groups.get(f, []), starts, stops, "warm pool")
        return Decision(tuple(starts), tuple(stops), wake)

    def shape(self, function: str) -> tuple[str, int]:
        return self.configs[function], 1


# --- GrandSLAm ----------------------------------------------------------------------------------


class GrandSlamPolicy(Policy):
    """GrandSLAm (Kannan et al., EuroSys'19): per-stage slack from the end-to-end SLA and dynamic
    batching within each stage's slack, on always-on microservice instances.

    - Device for the whole app: GPU when the critical path on one CPU core exceeds the SLA,
      else CPU. Slack of a stage = SLA x its one-core latency / the longest one-core path
      through it. Config = the smallest of the device's configs whose T(1) fits the slack (the
      fastest if none does). Batch = the most requests whose batch fits the slack.
    - No cold-start management: GrandSLAm's microservices are always up, so an instance, once
      started (on demand), is never stopped.
    Simplification: the request reordering by slack is moot here (one app, FIFO queues)."""

    name = "grandslam"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        app = ctx.app
        cat = ctx.catalogue
        one = cat.get("cpu-1") or min(_cpu_only(cat).values(), key=lambda c: c.resource)
        base: dict[str, float] = {}
        for f in app.functions:
            t = _warm_latency(app, f, one)
            if t is None:
                raise ValueError(f"grandslam: {f} has no CPU profile")
            base[f] = t
        tm = timing(app.dag, base)
        kind = Kind.GPU if tm.latency_s > app.sla_s else Kind.CPU
        ladder = sorted((c for c in cat.values() if c.kind is kind), key=lambda c: c.resource)
        self.configs: dict[str, str] = {}
        self.batch: dict[str, int] = {}
        for f in app.functions:
            slack = app.sla_s * base[f] / tm.through(f, base[f])
            pick = None
            for c in ladder:
                t = _warm_latency(app, f, c)
                if t is not None and t <= slack:
                    pick = c
                    break
            if pick is None:
                runnable = [c for c in ladder if _warm_latency(app, f, c) is not None]
                pick = min(runnable, key=lambda c: _warm_latency(app, f, c) or math.inf)
            self.configs[f] = pick.name
            self.batch[f] = _bundle(app, f, pick, slack)

    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        return _NOTHING

    def shape(self, function: str) -> tuple[str, int]:
        return self.configs[function], self.batch[function]


# --- registry -----------------------------------------------------------------------------------

POLICIES: dict[str, type[Policy]] = {
    p.name: p
    for p in (
        SmilessPolicy,
        SmilessHomoPolicy,
        SmilessNoDagPolicy,
        OraclePolicy,
        IceBreakerPolicy,
        OrionPolicy,
        AquatopePolicy,
        GrandSlamPolicy,
        HybridHistogramPolicy,
        KeepAlivePolicy,
    )
}
"""Every simulated policy by name; `lower-bound` is computed, not simulated (sim.lowerbound)."""

LOWER_BOUND = "lower-bound"
POLICY_NAMES: tuple[str, ...] = (*POLICIES, LOWER_BOUND)


def make_policy(name: str, ctx: PolicyContext, **kwargs: Any) -> Policy:
    cls = POLICIES.get(name)
    if cls is None:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    return cls(ctx, **kwargs)
