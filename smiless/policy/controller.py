"""The controller's timing: which instances to start and stop now, given a plan.

Pure: the optimizer service calls `decide` on every tick with the instances it sees (their
usage read from the workers), the simulator calls it at every event; both then carry out the
same decisions. Nothing here sleeps, reads a clock or talks to a backend.

Per function the plan gives a *warm window*, the span in which `instances` instances of
`instance_config` should be up:

- **stop after serving** (case 1, and scaled groups pre-warmed per arrival): from
  `prewarm_at_s` (the next predicted arrival + the stage's ready offset - init at μ + kσ) to
  the moment the predicted inputs should have been served plus `miss_grace_s`. An instance
  that has served and gone idle is stopped at once ("served"): the next arrival gets a fresh,
  pre-warmed one, and the window counts as used (no restart before the next plan). The grace
  bounds what a prediction that came too early costs.
- **kept alive** (case 2, and scaled groups kept warm): from now (the plan was made after an
  arrival) until the predicted arrival has been served, then for `keep_alive_s` more: an
  instance idle for longer than `keep_alive_s` once the window has closed is stopped
  ("keep-alive expired").

With no arrival history (`active=False`) nothing is pre-warmed: only arrivals start instances
(the optimizer's `EnsureInstance`), and they are stopped by the same rules. Busy instances are
never stopped. Instances on another config than the plan's are surplus: they serve until the
planned ones are ready, then are stopped when idle ("config changed").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from smiless.policy.search import FunctionPlan, Plan

DEFAULT_MISS_GRACE_S = 2.0
"""How long a pre-warmed instance waits past its predicted arrival before it is stopped."""


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What the controller needs to know of one live instance."""

    id: str
    function: str
    config: str
    ready: bool
    """False while it is starting."""
    started_at: float
    """When its start was commanded."""
    idle_since: float | None
    """None while it serves; else when it last became idle (its ready time if never used)."""
    served: int
    """Requests served since it started."""


@dataclass(frozen=True, slots=True)
class StartInstance:
    function: str
    config: str
    reason: str


@dataclass(frozen=True, slots=True)
class StopInstance:
    instance_id: str
    function: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    starts: tuple[StartInstance, ...]
    stops: tuple[StopInstance, ...]
    wake_at: float
    """The next time `decide` must run when nothing else happens (inf: never)."""


@dataclass(frozen=True, slots=True)
class WarmWindow:
    start: float
    end: float
    count: int


def warm_window(plan: Plan, fp: FunctionPlan, *, active: bool, miss_grace_s: float) -> WarmWindow:
    """When, and how many, instances of `fp` the plan wants up (see the module docstring)."""
    it = plan.forecast.it_s
    if not active or not math.isfinite(it):
        return WarmWindow(math.inf, -math.inf, 0)
    served_by = plan.now + it + fp.ready_offset_s + fp.latency_s
    if fp.stop_after_serving:
        start = fp.prewarm_at_s if fp.prewarm_at_s is not None else served_by - fp.exec_s
        return WarmWindow(start, served_by + miss_grace_s, fp.instances)
    return WarmWindow(-math.inf, served_by + fp.keep_alive_s, fp.instances)


def decide(
    plan: Plan,
    now: float,
    instances: Sequence[InstanceView],
    *,
    active: bool = True,
    miss_grace_s: float = DEFAULT_MISS_GRACE_S,
) -> Decision:
    """Starts and stops that bring `instances` (one app's live ones) in line with `plan` at
    `now`, and when to look again. `active`: the app has arrival history, so the plan's
    forecast is worth acting on before any request comes."""
    starts: list[StartInstance] = []
    stops: list[StopInstance] = []
    wake = math.inf
    by_function: dict[str, list[InstanceView]] = {}
    for inst in instances:
        by_function.setdefault(inst.function, []).append(inst)
    for f, fp in plan.functions.items():
        mine = by_function.pop(f, [])
        win = warm_window(plan, fp, active=active, miss_grace_s=miss_grace_s)
        in_window = win.start <= now <= win.end
        if now < win.start:
            wake = min(wake, win.start)
        elif now <= win.end:
            wake = min(wake, win.end)
        planned = [i for i in mine if i.config == fp.instance_config]
        others = [i for i in mine if i.config != fp.instance_config]
        stopped: set[str] = set()

        def stop(inst: InstanceView, reason: str, _f: str = f, _stopped: set[str] = stopped) -> None:
            stops.append(StopInstance(inst.id, _f, reason))
            _stopped.add(inst.id)

        for inst in mine:
            if inst.idle_since is None or not inst.ready:
                continue  # serving or starting: never interrupted
            if fp.stop_after_serving and inst.served > 0:
                stop(inst, "served")
            elif not in_window:
                expires = inst.idle_since + (0.0 if fp.stop_after_serving else fp.keep_alive_s)
                if now >= expires:
                    stop(inst, "no arrival" if fp.stop_after_serving else "keep-alive expired")
                else:
                    wake = min(wake, expires)
        ready_planned = sum(1 for i in planned if i.ready and i.id not in stopped)
        for inst in others:
            if inst.id not in stopped and inst.ready and inst.idle_since is not None and ready_planned > 0:
                stop(inst, "config changed")
        # An instance that served inside the window has met the arrival it was warmed for:
        # the next window comes with the plan made after that arrival.
        consumed = fp.stop_after_serving and any(
            i.served > 0 and i.idle_since is not None and i.idle_since >= win.start for i in mine
        )
        if in_window and not consumed:
            live = [i for i in planned if i.id not in stopped]
            for _ in range(win.count - len(live)):
                reason = "pre-warm" if fp.stop_after_serving else "keep warm"
                starts.append(StartInstance(f, fp.instance_config, reason))
            idle = sorted(
                (i for i in live if i.ready and i.idle_since is not None),
                key=lambda i: i.idle_since or 0.0,
            )
            for inst in idle[: max(0, len(live) - win.count)]:
                stop(inst, "scale down")
    for f, rest in by_function.items():  # functions the plan no longer has
        for inst in rest:
            if inst.ready and inst.idle_since is not None:
                stops.append(StopInstance(inst.id, f, "not in the plan"))
    return Decision(tuple(starts), tuple(stops), wake)
