"""`decide` as a pipeline of named rule steps, each a small function of one function's
`Stage` and the decision being built (`Round`).

The steps run in order per function; one that returns False ends that function's turn.
Runs at every simulator event: no per-function closures, `x if x > 1 else 1` for max(1, x).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from smiless.policy.controller.context import (
    ControllerContext,
    Decision,
    InstanceView,
    StartInstance,
    StopInstance,
)
from smiless.policy.controller.hysteresis import config_table, kept_instances, second_round, slots
from smiless.policy.controller.window import window_bounds
from smiless.policy.search import FunctionPlan


@dataclass(slots=True)
class Round:
    """The decision being built for one app, and what its functions' steps share."""

    starts: list[StartInstance] = field(default_factory=list)
    stops: list[StopInstance] = field(default_factory=list)
    wake: float = math.inf
    kept_latency: dict[str, float] = field(default_factory=dict)
    """Stage latencies with the other-config instances kept so far: the next SLA check's."""

    def wake_by(self, t: float) -> None:
        if t < self.wake:
            self.wake = t

    def stop(self, stage: Stage, inst: InstanceView, reason: str) -> None:
        self.stops.append(StopInstance(inst.id, stage.function, reason))
        stage.stopped.add(inst.id)


@dataclass(slots=True)
class Stage:
    """One function's instances against its plan, filled in as the steps run."""

    function: str
    fp: FunctionPlan
    mine: list[InstanceView]
    pending: int
    """Its requests in flight."""
    window: tuple[float, float, int]
    """(start, end, count) of its warm window."""
    previous: FunctionPlan | None
    batch: int
    in_window: bool = False
    in_current: bool = False
    """The window of the requests in flight is open."""
    planned: list[InstanceView] = field(default_factory=list)
    """Instances that count as planned ones: on the planned config, or kept by hysteresis."""
    others: list[InstanceView] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)
    live: list[InstanceView] = field(default_factory=list)
    have: int = 0
    """Batch slots of `live`."""
    ready_slots: int = 0
    planned_need: int = 0
    need: int = 0


def new_round(ctx: ControllerContext) -> Round:
    return Round(kept_latency={f: fp.latency_s for f, fp in ctx.plan.functions.items()})


def new_stage(ctx: ControllerContext, function: str, mine: list[InstanceView]) -> Stage:
    fp = ctx.plan.functions[function]
    pending = ctx.inflight.get(function, 0) if ctx.inflight is not None else 0
    previous = ctx.previous.functions.get(function) if ctx.previous is not None else None
    window = window_bounds(ctx.plan, fp, ctx.active, ctx.miss_grace_s)
    return Stage(function, fp, mine, pending, window, previous, fp.batch if fp.batch > 1 else 1)


def open_windows(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """Whether the warm window and that of the requests in flight are open; wake at their
    edges. The in-flight window opens when the plan made at their arrival would have
    started them."""
    now = ctx.now
    if st.pending > 0:
        cur_start = ctx.plan.now + st.fp.ready_offset_s - st.fp.init_s
        st.in_current = cur_start <= now
        if not st.in_current:
            r.wake_by(cur_start)
    w_start, w_end, _ = st.window
    st.in_window = w_start <= now <= w_end
    if now < w_start:
        r.wake_by(w_start)
    elif now <= w_end:
        r.wake_by(w_end)
    return True


def keep_near_configs(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """Instances on another config count as planned ones while the planned config is not
    materially cheaper and the DAG still meets its target with them (`kept_instances`)."""
    cfg = st.fp.instance_config
    st.planned = [i for i in st.mine if i.config == cfg]
    if len(st.planned) < len(st.mine):
        others = [i for i in st.mine if i.config != cfg]
        keep = kept_instances(ctx.plan, st.fp, others, r.kept_latency)
        if keep:
            st.planned += keep
            kept_ids = {i.id for i in keep}
            others = [i for i in others if i.id not in kept_ids]
        st.others = others
    return True


def stop_idle(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """Stop what has done its job: an instance that served and went idle ("served"), unless
    its arrival's burst may still be coming; one idle outside its window ("no arrival",
    "keep-alive expired"). Busy, starting and in-flight-wanted instances are never stopped."""
    if st.pending > 0:
        return True  # wanted by the requests in flight, even before their window opens
    now = ctx.now
    plan = ctx.plan
    after = st.fp.stop_after_serving
    burst_end = plan.now + plan.forecast.burst_s
    if not (after and burst_end > now):
        so_far = 0
    elif ctx.arrived is not None:
        so_far = ctx.arrived
    else:
        so_far = sum(i.served for i in st.mine)
    for inst in st.mine:
        if inst.idle_since is None or not inst.ready:
            continue
        if after and inst.served > 0:
            if burst_end > now and so_far < plan.forecast.count:
                r.wake_by(burst_end)  # the rest of this arrival's burst may still come
                continue
            r.stop(st, inst, "served")
        elif not st.in_window:
            expires = inst.idle_since + (0.0 if after else st.fp.keep_alive_s)
            if now >= expires:
                r.stop(st, inst, "no arrival" if after else "keep-alive expired")
            else:
                r.wake_by(expires)
    return True


def count_slots(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """What the window wants in batch slots, and what the planned instances left hold. An
    instance that served inside its window has met the arrival it was warmed for: the next
    window comes with the plan made after that arrival."""
    w_start, _, w_count = st.window
    consumed = st.fp.stop_after_serving and any(
        i.served > 0 and i.idle_since is not None and i.idle_since >= w_start for i in st.mine
    )
    st.planned_need = w_count * st.batch if st.in_window and not consumed else 0
    st.live = [i for i in st.planned if i.id not in st.stopped] if st.stopped else st.planned
    cfg = st.fp.instance_config
    for i in st.live:
        n = slots(i, cfg, st.batch, st.previous)
        st.have += n
        if i.ready:
            st.ready_slots += n
    return True


def retire_other_configs(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """Instances on a replaced config serve until ready planned ones can take what is wanted
    of the function, then are stopped when idle ("config changed")."""
    rs = st.ready_slots
    if st.others and rs > 0 and rs >= st.planned_need and rs >= st.pending:
        for inst in st.others:
            if inst.id not in st.stopped and inst.ready and inst.idle_since is not None:
                r.stop(st, inst, "config changed")
    return True


def size_for_inflight(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """The slots wanted now: the window's, or ⌈in flight⌉ less what the other configs' instances
    take at once, but only where a start is ready before the requests get here or nothing is
    live (a late start helps less than the instances already there). False: nothing wanted."""
    inflight_need = 0
    if st.in_current:
        fp = st.fp
        timely = ctx.now + fp.init_s <= ctx.plan.now + fp.ready_offset_s + 1e-9
        cfg = fp.instance_config
        spare = sum(slots(i, cfg, st.batch, st.previous) for i in st.others if i.id not in st.stopped)
        if timely or st.have + spare == 0:
            inflight_need = st.pending - spare
    st.need = st.planned_need if st.planned_need > inflight_need else inflight_need
    return st.need > 0


def scale_out(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """Start what the slots wanted lack, unless the window's shortfall can wait one round on
    the instances there (`second_round`). Starts for the requests in flight take the shape
    of the plan that sized them (`previous`). False: it started some."""
    need, have, fp = st.need, st.have, st.fp
    if (
        have < need
        and need == st.planned_need
        and second_round(ctx.plan, fp, st.live, st.previous, have, need - have, r.kept_latency)
    ):
        st.have = need
        return True
    if have >= need:
        return True
    f = st.function
    reason = "pre-warm" if fp.stop_after_serving else "keep warm"
    if need > st.planned_need:
        reason = "in flight"
        pfp = st.previous
        if pfp is not None and pfp.instance_config != fp.instance_config:
            pb = pfp.batch if pfp.batch > 1 else 1
            for _ in range(-(-(need - have) // pb)):
                r.starts.append(StartInstance(f, pfp.instance_config, reason, pb))
            return False
    for _ in range(-(-(need - have) // st.batch)):
        r.starts.append(StartInstance(f, fp.instance_config, reason))
    return False


def scale_down(ctx: ControllerContext, st: Stage, r: Round) -> bool:
    """Stop idle instances beyond what is wanted (and what the requests in flight need),
    longest idle first, once idle for a re-init's worth: the ski-rental break-even. A ready
    instance is never given up for one still starting; stopped-after-serving ones are not held."""
    idle = [i for i in st.live if i.ready and i.idle_since is not None]
    if not idle:
        return True
    idle.sort(key=_idle_since)
    fp = st.fp
    need = st.pending if st.pending > st.need else st.need
    after = fp.stop_after_serving
    init_of = config_table(ctx.plan, st.function).init
    for inst in idle:
        n = slots(inst, fp.instance_config, st.batch, st.previous)
        if st.have - n < need or st.ready_slots - n < need:
            continue
        assert inst.idle_since is not None
        hold = 0.0 if after else max(fp.keep_alive_s, init_of.get(inst.config, fp.init_s))
        expires = inst.idle_since + hold
        if ctx.now >= expires:
            r.stop(st, inst, "scale down")
            st.have -= n
            st.ready_slots -= n
        else:
            r.wake_by(expires)
    return True


Rule = Callable[[ControllerContext, Stage, Round], bool]

RULES: tuple[Rule, ...] = (
    open_windows,
    keep_near_configs,
    stop_idle,
    count_slots,
    retire_other_configs,
    size_for_inflight,
    scale_out,
    scale_down,
)
"""The steps of one function's turn, in order."""


def stop_unplanned(leftover: dict[str, list[InstanceView]], r: Round) -> None:
    """Idle instances of functions the plan no longer has are stopped."""
    for f, rest in leftover.items():
        for inst in rest:
            if inst.ready and inst.idle_since is not None:
                r.stops.append(StopInstance(inst.id, f, "not in the plan"))


def decide(ctx: ControllerContext) -> Decision:
    """Starts and stops that bring the app's instances in line with its plan now, and when
    to look again."""
    by_function: dict[str, list[InstanceView]] = {}
    for inst in ctx.instances:
        group = by_function.get(inst.function)
        if group is None:
            by_function[inst.function] = [inst]
        else:
            group.append(inst)
    r = new_round(ctx)
    for f in ctx.plan.functions:
        mine = by_function.pop(f, None) or []
        st = new_stage(ctx, f, mine)
        if not mine and st.pending <= 0 and st.window[2] == 0 and st.window[0] == math.inf:
            continue  # nothing there, nothing wanted, no window to wake for
        for rule in RULES:
            if not rule(ctx, st, r):
                break
    stop_unplanned(by_function, r)
    return Decision(tuple(r.starts), tuple(r.stops), r.wake)


def _idle_since(inst: InstanceView) -> float:
    return inst.idle_since or 0.0
