"""Each of the controller's rule steps alone, on a `Stage` set up by hand (the pipeline as a
whole: test_controller.py)."""

from __future__ import annotations

import math

from smiless.policy.controller import ControllerContext, InstanceView, warm_window
from smiless.policy.controller.rules import (
    Round,
    Stage,
    count_slots,
    keep_near_configs,
    new_round,
    new_stage,
    open_windows,
    retire_other_configs,
    scale_down,
    scale_out,
    size_for_inflight,
    stop_idle,
    stop_unplanned,
)
from smiless.policy.costmodel import Forecast
from smiless.policy.search import Plan, fast_plan
from tests.unit.policy.helpers import CATALOGUE
from tests.unit.policy.test_controller import PROFILES, plan_for, view


def stage(
    plan: Plan, now: float, insts: list[InstanceView], f: str = "a", **kw: object
) -> tuple[ControllerContext, Stage, Round]:
    ctx = ControllerContext(plan, now, insts, **kw)  # type: ignore[arg-type]
    return ctx, new_stage(ctx, f, insts), new_round(ctx)


# --- open_windows -------------------------------------------------------------------------


def test_open_windows_wakes_at_the_warm_windows_edges() -> None:
    plan = plan_for(30.0)
    win = warm_window(plan, plan.functions["a"], active=True, miss_grace_s=2.0)
    ctx, st, r = stage(plan, win.start - 1.0, [])
    assert open_windows(ctx, st, r) and not st.in_window and r.wake == win.start
    ctx, st, r = stage(plan, win.start + 0.1, [])
    assert open_windows(ctx, st, r) and st.in_window and r.wake == win.end
    ctx, st, r = stage(plan, win.end + 0.1, [])
    assert open_windows(ctx, st, r) and not st.in_window and r.wake == math.inf


def test_open_windows_opens_the_in_flight_window_when_their_start_would_be_due() -> None:
    plan = plan_for(30.0)
    fb = plan.functions["b"]
    due = plan.now + fb.ready_offset_s - fb.init_s
    ctx, st, r = stage(plan, due - 0.1, [], "b", inflight={"b": 1})
    open_windows(ctx, st, r)
    assert not st.in_current and r.wake == due
    ctx, st, r = stage(plan, due, [], "b", inflight={"b": 1})
    open_windows(ctx, st, r)
    assert st.in_current


# --- keep_near_configs --------------------------------------------------------------------


def test_keep_near_configs_counts_a_near_config_as_planned_and_not_a_dear_one() -> None:
    plan = plan_for(1.2)
    assert plan.functions["a"].instance_config == "cpu-1"
    near = view("near", "a", "cpu-2")  # twice the price, faster: within the hysteresis
    dear = InstanceView("dear", "a", "cpu-2", True, 0.0, 0.0, 0, 1, 1.0)  # priced far above
    mine = view("mine", "a", "cpu-1")
    ctx, st, r = stage(plan, plan.now, [mine, near, dear])
    assert keep_near_configs(ctx, st, r)
    assert [i.id for i in st.planned] == ["mine", "near"] and [i.id for i in st.others] == ["dear"]


# --- stop_idle ----------------------------------------------------------------------------


def test_stop_idle_stops_what_has_served_but_not_while_requests_are_in_flight() -> None:
    plan = plan_for(30.0)
    t = plan.now + 5.0
    cfg = plan.functions["a"].instance_config
    served = view("s", "a", cfg, idle_since=t - 0.1, served=1)
    busy = view("b", "a", cfg, idle_since=None, served=1)
    ctx, st, r = stage(plan, t, [served, busy])
    assert stop_idle(ctx, st, r)
    assert [(s.instance_id, s.reason) for s in r.stops] == [("s", "served")] and st.stopped == {"s"}
    ctx, st, r = stage(plan, t, [served], inflight={"a": 1})
    stop_idle(ctx, st, r)
    assert not r.stops


def test_stop_idle_waits_for_the_rest_of_the_burst() -> None:
    plan = fast_plan(["a", "b"], [("a", "b")], 3.0, PROFILES, CATALOGUE, Forecast(30.0, 3, 1.0, 2.0), 100.0)
    cfg = plan.functions["a"].instance_config
    one = view("s", "a", cfg, idle_since=plan.now + 0.5, served=1)
    ctx, st, r = stage(plan, plan.now + 1.0, [one], arrived=1)
    stop_idle(ctx, st, r)
    assert not r.stops and r.wake == plan.now + 2.0
    ctx, st, r = stage(plan, plan.now + 1.0, [one], arrived=3)
    stop_idle(ctx, st, r)
    assert [s.reason for s in r.stops] == ["served"]


def test_stop_idle_expires_a_kept_alive_instance_outside_its_window() -> None:
    plan = plan_for(1.2)
    fa = plan.functions["a"]
    idle = view("i", "a", fa.instance_config, idle_since=plan.now, served=3)
    t = plan.now + 100.0
    ctx, st, r = stage(plan, t, [idle])
    st.in_window = False
    stop_idle(ctx, st, r)
    assert [s.reason for s in r.stops] == ["keep-alive expired"]
    ctx, st, r = stage(plan, plan.now + fa.keep_alive_s / 2, [idle])
    stop_idle(ctx, st, r)
    assert not r.stops and r.wake == plan.now + fa.keep_alive_s


# --- count_slots --------------------------------------------------------------------------


def test_count_slots_counts_batch_slots_of_the_planned_instances_left() -> None:
    plan = plan_for(30.0, count=4)
    fa = plan.functions["a"]
    assert (fa.instances, fa.batch) == (1, 4)
    cfg = fa.instance_config
    ready = view("r", "a", cfg, batch=1)
    starting = view("s", "a", cfg, ready=False, idle_since=None)  # unknown batch: the plan's
    gone = view("g", "a", cfg, batch=2)
    ctx, st, r = stage(plan, plan.now, [ready, starting, gone])
    st.in_window, st.planned, st.stopped = True, [ready, starting, gone], {"g"}
    assert count_slots(ctx, st, r)
    assert (st.planned_need, st.have, st.ready_slots) == (4, 5, 1)
    assert [i.id for i in st.live] == ["r", "s"]


def test_count_slots_wants_nothing_once_the_window_has_been_used() -> None:
    plan = plan_for(30.0)
    win = warm_window(plan, plan.functions["a"], active=True, miss_grace_s=2.0)
    used = view("u", "a", plan.functions["a"].instance_config, idle_since=win.start + 0.5, served=1)
    ctx, st, r = stage(plan, win.start + 1.0, [used])
    st.in_window, st.planned = True, [used]
    count_slots(ctx, st, r)
    assert st.planned_need == 0


# --- retire_other_configs -----------------------------------------------------------------


def test_retire_other_configs_waits_for_enough_ready_planned_slots() -> None:
    plan = plan_for(1.2)
    old = view("old", "a", "cpu-8")
    ctx, st, r = stage(plan, plan.now, [old])
    st.others, st.planned_need, st.ready_slots = [old], 1, 0
    assert retire_other_configs(ctx, st, r) and not r.stops
    st.ready_slots = 1
    retire_other_configs(ctx, st, r)
    assert [(s.instance_id, s.reason) for s in r.stops] == [("old", "config changed")]


# --- size_for_inflight --------------------------------------------------------------------


def test_size_for_inflight_wants_what_other_configs_cannot_take_when_timely() -> None:
    plan = plan_for(30.0)
    fb = plan.functions["b"]
    t = plan.now + fb.ready_offset_s - fb.init_s  # a start now is just in time
    other = view("o", "b", "cpu-8", batch=2)
    ctx, st, r = stage(plan, t, [other], "b", inflight={"b": 5})
    st.in_current, st.others = True, [other]
    assert size_for_inflight(ctx, st, r) and st.need == 3
    late = ctx.now + 1.0  # too late to help, and an instance is there: they queue for it
    ctx, st, r = stage(plan, late, [other], "b", inflight={"b": 5})
    st.in_current, st.others = True, [other]
    assert not size_for_inflight(ctx, st, r) and st.need == 0


# --- scale_out ----------------------------------------------------------------------------


def test_scale_out_starts_the_shortfall_in_batches() -> None:
    plan = plan_for(30.0, count=4)
    fa = plan.functions["a"]
    ctx, st, r = stage(plan, plan.now, [])
    st.need = st.planned_need = 2 * st.batch + 1
    assert not scale_out(ctx, st, r)
    assert [(s.config, s.reason) for s in r.starts] == [(fa.instance_config, "pre-warm")] * 3
    ctx, st, r = stage(plan, plan.now, [])
    st.need, st.have = 4, 4
    assert scale_out(ctx, st, r) and not r.starts


def test_scale_out_starts_in_flight_requests_in_the_previous_plans_shape() -> None:
    plan = plan_for(30.0)
    previous = fast_plan(
        ["a", "b"], [("a", "b")], 3.0, PROFILES, {"cpu-2": CATALOGUE["cpu-2"]}, Forecast(30.0, 1, 1.0), 70.0
    )
    pb = previous.functions["b"]
    ctx, st, r = stage(plan, plan.now, [], "b", previous=previous)
    st.need, st.planned_need = 3, 0
    assert not scale_out(ctx, st, r)
    assert {(s.config, s.batch, s.reason) for s in r.starts} == {("cpu-2", pb.batch, "in flight")}


# --- scale_down ---------------------------------------------------------------------------


def test_scale_down_holds_a_kept_alive_surplus_for_the_break_even_then_stops_it() -> None:
    plan = plan_for(1.2)
    fa = plan.functions["a"]
    hold = max(fa.keep_alive_s, fa.init_s)
    a, b = view("a1", "a", "cpu-1", idle_since=plan.now), view("a2", "a", "cpu-1", idle_since=plan.now + 1)
    for now, stopped in ((plan.now + hold - 0.1, []), (plan.now + hold + 0.1, ["a1"])):
        ctx, st, r = stage(plan, now, [a, b])
        st.live, st.need, st.have, st.ready_slots = [a, b], 1, 2, 2
        assert scale_down(ctx, st, r)
        assert [s.instance_id for s in r.stops] == stopped


def test_scale_down_never_gives_up_a_ready_instance_for_a_starting_one() -> None:
    plan = plan_for(1.2)
    ready = view("r", "a", "cpu-1", idle_since=plan.now)
    starting = view("s", "a", "cpu-1", ready=False, idle_since=None)
    ctx, st, r = stage(plan, plan.now + 1e6, [ready, starting])
    st.live, st.need, st.have, st.ready_slots = [ready, starting], 1, 2, 1
    scale_down(ctx, st, r)
    assert not r.stops


# --- stop_unplanned -----------------------------------------------------------------------


def test_stop_unplanned_stops_idle_instances_of_functions_gone_from_the_plan() -> None:
    r = Round()
    idle, busy = view("x", "gone", "cpu-1"), view("y", "gone", "cpu-1", idle_since=None)
    stop_unplanned({"gone": [idle, busy]}, r)
    assert [(s.instance_id, s.reason) for s in r.stops] == [("x", "not in the plan")]
