"""What the policies know about the future: predictor timelines, the oracle's truth, and a plan
cache. All of it is computed from the workload alone (arrivals do not depend on the policy),
so it is computed once per workload and shared by every policy and SLA that uses it.

Predictor use is bounded (the LSTM is the costly one): each predictor is fitted once per
workload on its history (the minutes before `start_minute`, the "training part"), then asked
once per active simulated minute with the history up to and including that minute, exactly as
the predictor service would be after that minute's arrivals; `predict` never trains.
Simplification: with Poisson spreading the prediction made at a minute's first arrival already
counts the whole minute's invocations (the gateway would see them over the next two seconds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from smiless.catalogue import HardwareConfig
from smiless.policy.costmodel import Forecast
from smiless.policy.predictors import Prediction, make_predictor
from smiless.policy.search import Plan
from smiless.sim.model import SimApp
from smiless.sim.workload import Workload


@contextmanager
def _one_thread() -> Iterator[None]:
    """Predict on one thread: a network this small is slower on two busy cores than on one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _key(wl: Workload) -> str:
    return hashlib.sha1(wl.counts.tobytes()).hexdigest()[:16] + f":{wl.start_minute}"


def prediction_timeline(
    wl: Workload, kind: str, shared: MutableMapping[Any, Any] | None = None
) -> dict[int, Prediction]:
    """minute -> the `kind` predictor's prediction with the history through that minute, for
    every active simulated minute and for the last history minute (`start_minute - 1`)."""
    cache_key = ("timeline", kind, _key(wl))
    if shared is not None and cache_key in shared:
        out: dict[int, Prediction] = shared[cache_key]
        return out
    counts = wl.counts
    start = wl.start_minute
    predictor = make_predictor(kind)
    out = {}
    with _one_thread():
        if start > 0:
            predictor.fit(counts[:start])
            out[start - 1] = predictor.predict(counts[:start])
        for m in np.flatnonzero(counts[start:]).tolist():
            minute = start + m
            out[minute] = predictor.predict(counts[: minute + 1])
    if shared is not None:
        shared[cache_key] = out
    return out


def truth_timeline(wl: Workload, horizon_s: float = 0.0) -> dict[int, Forecast]:
    """minute -> the true next arrival after it (the oracle's forecast): the IT to the next
    active minute, and the largest count among the arrivals from that minute to `horizon_s`
    after it; `inf` IT after the last arrival.

    Why the horizon: a plan times one arrival, the next. An arrival that follows the next by
    less than an init cannot be pre-warmed by the plan made at the next one, so the plan made
    now must already be sized for it; with `horizon_s` = 0 (the next count alone) a burst one
    slot after a single request always meets too few instances, however exact the IT."""
    counts = wl.counts
    active = np.flatnonzero(counts).tolist()
    out: dict[int, Forecast] = {}
    keys = [m for m in active if m >= wl.start_minute]
    if wl.start_minute > 0:
        keys = [wl.start_minute - 1, *keys]
    span = math.floor(horizon_s / wl.slot_s + 1e-9) if horizon_s > 0 else 0  # slots after the next
    j = 0
    for m in keys:
        while j < len(active) and active[j] <= m:
            j += 1
        if j < len(active):
            nxt = active[j]
            last = active[j - 1] if j > 0 else m  # an IT counts from the last arrival
            count = int(counts[nxt : nxt + span + 1].max())
            out[m] = Forecast((nxt - last) * wl.slot_s, count, 0.0, wl.slot_s)
        else:
            out[m] = Forecast(math.inf, 1, 0.0)
    return out


def last_arrival_minute(wl: Workload, through: int) -> int | None:
    """The last active minute at or before `through` (None if none)."""
    active = np.flatnonzero(wl.counts[: through + 1])
    return int(active[-1]) if active.size else None


Planner = Callable[[SimApp, Mapping[str, HardwareConfig], Forecast], Plan]


class PlanCache:
    """Plans by forecast, made once at `now = 0` and moved in time on use.

    A plan depends on `now` only through `prewarm_at_s = now + IT + ready offset - init`, so a
    plan for `now` is the plan for 0 with `now` and every `prewarm_at_s` shifted by `now`: a
    translation, not a second copy of the planner's arithmetic."""

    def __init__(self, planner: Planner, app: SimApp, catalogue: Mapping[str, HardwareConfig]) -> None:
        self.planner = planner
        self.app = app
        self.catalogue = catalogue
        self.plans: dict[tuple[float, int, float, float | None], Plan] = {}
        self.hits = 0
        self.misses = 0

    def plan(self, forecast: Forecast, now: float) -> Plan:
        key = (forecast.it_s, forecast.count, forecast.keep_alive_s, forecast.it_median_s)
        base = self.plans.get(key)
        if base is None:
            self.misses += 1
            base = self.plans[key] = self.planner(self.app, self.catalogue, forecast)
        else:
            self.hits += 1
        plan = shift(base, now)
        # The planner does not read `burst_s` (the controller does): same plan, the caller's
        # burst (the rest of the plan's forecast is what it was planned for: its IT may be the
        # median, see `sla_aware_plan`).
        if plan.forecast.burst_s == forecast.burst_s:
            return plan
        return dataclasses.replace(
            plan, forecast=dataclasses.replace(plan.forecast, burst_s=forecast.burst_s)
        )


def shift(plan: Plan, now: float) -> Plan:
    """`plan` (made at 0) as if made at `now`."""
    if now == plan.now:
        return plan
    dt = now - plan.now
    functions = {
        f: fp if fp.prewarm_at_s is None else dataclasses.replace(fp, prewarm_at_s=fp.prewarm_at_s + dt)
        for f, fp in plan.functions.items()
    }
    return dataclasses.replace(plan, now=now, functions=functions)
