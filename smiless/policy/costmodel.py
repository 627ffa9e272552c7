"""Cost and latency of one function on one hardware config, under a forecast.

For predicted inter-arrival time IT and execution time `T_exec = T_init + T_busy` (init at
μ + kσ, busy = serving one arrival's invocations) the three cold-start cases are:

1. PREWARM, `IT ≥ T_exec`: stop after serving and start again `T_init` before the next inputs
   arrive; the instance lives `T_exec` per arrival, so it costs `U·T_exec`.
2. KEEP_ALIVE, `T_busy < IT < T_exec`: too little time to stop and re-initialise, so the
   instance stays up through the gap and costs `U·IT`.
3. SCALED, invocations overlap (several arrive together, or `IT < T_busy` so the next arrives
   while the last is still served; docs/design.md writes `IT ≤ T_inf`, but at equality one instance
   finishes just as the next arrives, so that boundary stays KEEP_ALIVE): the auto-scaler
   sizes a group of instances and the group's price `P` replaces `U`; the group is
   pre-warmed or kept alive by the same rule, so it costs `P·min(IT, T_exec)`.

Every case is `P·min(IT, T_exec)` per arrival; the cases differ in what the controller does.
The reference bills case 3 as `U·T_exec` of a single instance, which undercounts a scaled group.

The DAG enters only through the timing, not the cost: a stage must be ready when its inputs
arrive, `ready_offset` after the request (the longest upstream latency), so its pre-warm
starts at `arrival + ready_offset - T_init` and its lifetime is still `T_exec`; warming it at
the request's arrival instead would add `U·ready_offset` of idle time per invocation. The cost
of a candidate is therefore independent of the other stages' choices, which keeps the search
separable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import NamedTuple, Protocol

from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.autoscaler import ResourceLadder, scale
from smiless.policy.profile import DEFAULT_K_SIGMA, FunctionProfile


class Mode(StrEnum):
    """The cold-start case a function runs in (docs/design.md §4)."""

    PREWARM = "prewarm"
    KEEP_ALIVE = "keep-alive"
    SCALED = "scaled"


@dataclass(frozen=True, slots=True)
class Forecast:
    """What the planner needs of the predictor's output for an app, in seconds; applied to
    every function of its DAG (the IT of the entry function, as in the reference). The
    predictor speaks in slots: see `from_slots`."""

    it_s: float
    """Predicted time between the app's invocations (s); `inf` when none is expected."""
    count: int = 1
    """Invocations that arrive together at each arrival."""
    keep_alive_s: float = 0.0
    """The predictor's idle-time tail (P99): the least keep-alive when an instance is kept."""
    burst_s: float = 0.0
    """How long one arrival's `count` requests may take to come: the predictor's slot, since
    it counts the requests of one slot as one arrival (0: they come at once)."""
    it_median_s: float | None = None
    """The predictor's uncorrected median IT when `it_s` is shrunk below it so that pre-warms
    are rarely late (the SMIless correction); None when there is no such median. The planner
    plans with it where a late pre-warm, a cold start, still meets the SLA
    (`search.sla_aware_plan`)."""

    def __post_init__(self) -> None:
        if not self.it_s > 0.0:
            raise ValueError(f"forecast.it_s must be > 0, got {self.it_s!r}")
        if self.count < 1:
            raise ValueError(f"forecast.count must be >= 1, got {self.count!r}")
        if not self.keep_alive_s >= 0.0:
            raise ValueError(f"forecast.keep_alive_s must be >= 0, got {self.keep_alive_s!r}")
        if not self.burst_s >= 0.0:
            raise ValueError(f"forecast.burst_s must be >= 0, got {self.burst_s!r}")
        if self.it_median_s is not None and not self.it_median_s > 0.0:
            raise ValueError(f"forecast.it_median_s must be > 0, got {self.it_median_s!r}")

    @classmethod
    def from_slots(cls, prediction: SlotPrediction, slot_s: float) -> Forecast:
        """From a predictor's `Prediction` (smiless.policy.predictors), whose times are slots
        of `slot_s` seconds. Its IT counts from the last arrival, so plan with `now` = the
        last arrival's time (the caller's clock minus `elapsed_slots` slots)."""
        keep = prediction.keep_alive_slots
        median = prediction.it_median_slots
        return cls(
            prediction.it_slots * slot_s,
            max(prediction.count, 1),
            (keep or 0) * slot_s,
            slot_s,
            None if median is None else median * slot_s,
        )


class SlotPrediction(Protocol):
    """The fields of the predictor's `Prediction` the planner reads (duck-typed so planning
    does not import the predictors and their model runtimes)."""

    @property
    def it_slots(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def keep_alive_slots(self) -> int | None: ...
    @property
    def it_median_slots(self) -> int | None: ...


class Candidate(NamedTuple):
    """One function on one config: what it costs, how long it takes, how it is run.

    A NamedTuple rather than a dataclass because the planner builds N × M of them per plan and
    tuple construction is several times cheaper."""

    config: str
    kind: Kind
    latency_s: float
    """Planned stage latency: warm inference of one invocation plus the first-request extra.
    This is what counts against the SLA; a scaled group is sized to stay within it."""
    cost: float
    """Per invocation, in the catalogue's currency."""
    mode: Mode
    init_s: float
    """μ + kσ: how long before its inputs arrive an instance must be started."""
    busy_s: float
    """Time the instance (group) spends serving one arrival."""
    exec_s: float
    """init_s + busy_s: an instance's lifetime per arrival when stopped after serving."""
    prewarm_window_s: float
    """Idle gap between serving and the next pre-warm (0 when kept alive)."""
    keep_alive_s: float
    """How long to keep an instance after serving (0 = stop after serving)."""
    batch: int
    instances: int
    instance_config: str
    """Config the instances run on; differs from `config` only when the auto-scaler found a
    cheaper shape (bigger batches on a bigger config) within `config`'s latency."""
    price_per_second: float
    """Of the whole instance group."""


def evaluate(
    profile: FunctionProfile,
    config: HardwareConfig,
    forecast: Forecast,
    ladder: ResourceLadder | None = None,
    k_sigma: float = DEFAULT_K_SIGMA,
    *,
    init_s: float | None = None,
) -> Candidate:
    """Cost, latency and cold-start case of `profile`'s function on `config`.

    `ladder` (the catalogue's configs of `config.kind`) is needed only when several invocations
    arrive together; without it they are served by one instance each on `config`. `init_s`
    passes a precomputed `profile.init.bound(k_sigma)` (the planner evaluates one profile on
    many configs)."""
    t_init = profile.init.bound(k_sigma) if init_s is None else init_s
    price = config.price_per_second
    return evaluate_on(profile, config.name, config.kind, config.resource, price, forecast, ladder, t_init)


def evaluate_on(
    profile: FunctionProfile,
    name: str,
    kind: Kind,
    r: float,
    unit_price: float,
    forecast: Forecast,
    ladder: ResourceLadder | None,
    t_init: float,
    budget_s: float | None = None,
) -> Candidate:
    """`evaluate` on a config given by its fields (name, kind, resource, price per second):
    the planner's inner loop, N × M calls per plan, so nothing here is recomputed per call.

    `budget_s`: the inference time a scaled group may take (default T(1, r), one invocation
    alone on this config); a larger budget lets the auto-scaler batch more per instance and
    is then the stage's planned latency (see `evaluate_batched`)."""
    inf = profile.inference
    base = inf.lam * (inf.alpha / r + inf.beta) + inf.gamma  # T(1, r), inlined
    latency = base + profile.cs_extra
    it = forecast.it_s
    count = forecast.count
    if count == 1:
        batch, n, inst_cfg, price, busy = 1, 1, name, unit_price, latency
    else:
        batch, n, inst_cfg, price, busy = 1, count, name, count * unit_price, latency
        if ladder is not None:
            d = scale(count, inf, base if budget_s is None else budget_s, ladder)
            if d.feasible and d.price_per_second <= price * (1 + 1e-9):  # ties: the scaler's, fewer
                batch, n, inst_cfg, price = d.batch, d.instances, d.config, d.price_per_second
                busy = d.latency_s + profile.cs_extra
                if budget_s is not None:
                    latency = busy
    if it < busy:  # the next arrival comes while this one is served: one more group per overlap
        overlap = math.ceil(busy / it)
        n *= overlap
        price *= overlap
    t_exec = t_init + busy
    if it >= t_exec:
        mode = Mode.PREWARM if n == 1 and batch == 1 else Mode.SCALED
        cost_per_arrival = price * t_exec
        window = it - t_exec
        keep_alive = 0.0
    else:
        mode = Mode.KEEP_ALIVE if n == 1 and batch == 1 else Mode.SCALED
        cost_per_arrival = price * it
        window = 0.0
        keep_alive = max(it - busy, forecast.keep_alive_s, 0.0)
    return Candidate(
        name,
        kind,
        latency,
        cost_per_arrival / count,
        mode,
        t_init,
        busy,
        t_exec,
        window,
        keep_alive,
        batch,
        n,
        inst_cfg,
        price,
    )


_BY_COST_THEN_LATENCY = itemgetter(3, 2)  # (cost, latency_s) of a Candidate


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """The candidates no other one beats on both cost and latency, cheapest first.

    Dropping a dominated candidate never loses the optimum: swapping it for its dominator
    keeps every path's latency and lowers or keeps the cost. Result: cost ascending, latency
    strictly descending."""
    ordered = sorted(cands, key=_BY_COST_THEN_LATENCY)
    front: list[Candidate] = []
    for c in ordered:
        if not front or c.latency_s < front[-1].latency_s:
            front.append(c)
    return front


def evaluate_batched(
    profile: FunctionProfile,
    name: str,
    kind: Kind,
    r: float,
    unit_price: float,
    forecast: Forecast,
    ladder: ResourceLadder | None,
    t_init: float,
) -> list[Candidate]:
    """`evaluate_on`, plus, when several invocations arrive together, the same config with
    inference budgets that let the auto-scaler batch them: T(B, r) for B = 2, 4, ... up to
    the count. Each is slower (the batch is the stage's latency) and needs fewer instances,
    so it is cheaper; the path search spends SLA slack on it where the SLA allows.

    Why: with the budget fixed at T(1, r), G invocations that arrive together need G
    instances on r (a bigger config batches only what it serves within T(1, r)), although
    an SLA with slack could take the batch. That is ⌈G/B⌉ times the instances to start, keep
    and pay for; SMIless's scaler only sizes within the path search's latency, so this goes
    beyond it."""
    first = evaluate_on(profile, name, kind, r, unit_price, forecast, ladder, t_init)
    count = forecast.count
    if count == 1 or ladder is None:
        return [first]
    out = [first]
    seen = {(first.batch, first.instances, first.instance_config)}
    sizes = [b for b in (2**k for k in range(1, count.bit_length())) if b < count] + [count]
    for b in sizes:
        budget = profile.inference.latency(b, r)
        c = evaluate_on(profile, name, kind, r, unit_price, forecast, ladder, t_init, budget)
        key = (c.batch, c.instances, c.instance_config)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
