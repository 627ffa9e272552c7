"""The controller's timing rules on real plans from the fast search."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smiless.catalogue import Kind
from smiless.policy.controller import ControllerContext, Decision, InstanceView, decide, warm_window
from smiless.policy.costmodel import Forecast, Mode
from smiless.policy.search import Plan, fast_plan
from tests.unit.policy.helpers import CATALOGUE, profile

CONFIGS = {n: CATALOGUE[n] for n in ("cpu-1", "cpu-2")}
# A 2-stage chain: init 1.5 s (σ 0.1), inference ~0.1-0.2 s.
PROFILES = {f: {"cpu": profile(Kind.CPU, 0.2, 0.5, 0.5, 0.01, 1.5, 0.1)} for f in ("a", "b")}


def plan_for(it_s: float, now: float = 100.0, count: int = 1, sla_s: float = 3.0) -> Plan:
    return fast_plan(["a", "b"], [("a", "b")], sla_s, PROFILES, CONFIGS, Forecast(it_s, count, 1.0), now)


def decided(plan: Plan, now: float, instances: list[InstanceView], **kw: Any) -> Decision:
    return decide(ControllerContext(plan, now, instances, **kw))


def view(
    iid: str,
    function: str,
    config: str,
    *,
    ready: bool = True,
    idle_since: float | None = 0.0,
    served: int = 0,
    started_at: float = 0.0,
    batch: int | None = None,
) -> InstanceView:
    return InstanceView(iid, function, config, ready, started_at, idle_since, served, batch)


def test_prewarm_starts_in_the_window_and_not_before() -> None:
    plan = plan_for(30.0)
    fa = plan.functions["a"]
    assert fa.mode is Mode.PREWARM and fa.prewarm_at_s is not None
    before = decided(plan, fa.prewarm_at_s - 1.0, [])
    assert not before.starts
    assert before.wake_at <= fa.prewarm_at_s  # it asks to be woken at the window
    at = decided(plan, fa.prewarm_at_s + 0.01, [])
    assert [s.function for s in at.starts] == ["a"]
    assert at.starts[0].config == fa.instance_config
    # b's inputs arrive later (after a's latency): its window opens later.
    fb = plan.functions["b"]
    assert fb.prewarm_at_s is not None and fb.prewarm_at_s > fa.prewarm_at_s


def test_prewarmed_instance_is_stopped_after_serving_and_not_restarted() -> None:
    plan = plan_for(30.0)
    fa = plan.functions["a"]
    assert fa.prewarm_at_s is not None
    t = fa.prewarm_at_s + 2.0
    served = view("i1", "a", fa.instance_config, idle_since=t - 0.1, served=1)
    d = decided(plan, t, [served])
    assert [(s.instance_id, s.reason) for s in d.stops] == [("i1", "served")]
    assert not [s for s in d.starts if s.function == "a"]


def test_an_instance_that_served_waits_for_the_rest_of_its_burst() -> None:
    """The predictor counts one slot's requests as one arrival (`burst_s`): an instance that
    served the first of a predicted 3 waits, while the slot lasts, for the other two rather
    than leaving them a cold start; once 3 are served, or the slot is over, it stops."""
    plan = fast_plan(["a", "b"], [("a", "b")], 3.0, PROFILES, CONFIGS, Forecast(30.0, 3, 1.0, 2.0), 100.0)
    fa = plan.functions["a"]
    assert fa.stop_after_serving
    t = plan.now + 0.5
    one = view("i1", "a", fa.instance_config, idle_since=t - 0.1, served=1)
    d = decided(plan, t, [one])
    assert not d.stops and d.wake_at <= plan.now + 2.0
    three = view("i1", "a", fa.instance_config, idle_since=t - 0.1, served=3)
    assert [s.reason for s in decided(plan, t, [three]).stops] == ["served"]
    assert [s.reason for s in decided(plan, plan.now + 2.01, [one]).stops] == ["served"]


def test_the_burst_counts_its_own_arrivals_not_what_was_served_before() -> None:
    """An instance that served 18 requests in earlier bursts and the first one of this burst
    still waits for the rest of it: the arrivals since the plan say how much of the burst
    has come (stopping on the lifetime count left amber-alert's spread bursts cold)."""
    plan = fast_plan(["a", "b"], [("a", "b")], 3.0, PROFILES, CONFIGS, Forecast(30.0, 3, 1.0, 2.0), 100.0)
    fa = plan.functions["a"]
    t = plan.now + 0.5
    veteran = view("i1", "a", fa.instance_config, idle_since=t - 0.1, served=19)
    assert [s.reason for s in decided(plan, t, [veteran]).stops] == ["served"]  # lifetime count
    d = decided(plan, t, [veteran], arrived=1)
    assert not d.stops and d.wake_at <= plan.now + 2.0
    assert [s.reason for s in decided(plan, t, [veteran], arrived=3).stops] == ["served"]
    assert [s.reason for s in decided(plan, plan.now + 2.01, [veteran], arrived=1).stops] == ["served"]


def test_busy_and_starting_instances_are_never_stopped() -> None:
    plan = plan_for(30.0)
    busy = view("i1", "a", "cpu-1", idle_since=None, served=3)
    starting = view("i2", "a", "cpu-1", ready=False, idle_since=None)
    d = decided(plan, 1e6, [busy, starting])
    assert not d.stops


def test_missed_prediction_stops_after_the_grace() -> None:
    plan = plan_for(30.0)
    win = warm_window(plan, plan.functions["a"], active=True, miss_grace_s=2.0)
    idle = view("i1", "a", plan.functions["a"].instance_config, idle_since=win.start + 1.5)
    assert not decided(plan, win.end - 0.01, [idle], miss_grace_s=2.0).stops
    late = decided(plan, win.end + 0.01, [idle], miss_grace_s=2.0)
    assert [s.reason for s in late.stops] == ["no arrival"]


def test_the_grace_is_at_least_the_init() -> None:
    """A pre-warmed instance whose arrival is late is kept for at least its init past the
    predicted serving time: stopping sooner only pays the init again."""
    slow = {f: {"cpu": profile(Kind.CPU, 0.2, 0.5, 0.5, 0.01, 4.0, 0.1)} for f in ("a", "b")}
    plan = fast_plan(["a", "b"], [("a", "b")], 3.0, slow, CONFIGS, Forecast(30.0, 1, 1.0), 100.0)
    fa = plan.functions["a"]
    assert fa.stop_after_serving and fa.init_s > 2.0
    win = warm_window(plan, fa, active=True, miss_grace_s=2.0)
    served_by = plan.now + 30.0 + fa.ready_offset_s + fa.latency_s
    assert win.end == pytest.approx(served_by + fa.init_s)
    idle = view("i1", "a", fa.instance_config, idle_since=win.start + fa.init_s)
    assert not decided(plan, served_by + 2.5, [idle], miss_grace_s=2.0).stops
    assert [s.reason for s in decided(plan, win.end + 0.01, [idle], miss_grace_s=2.0).stops] == ["no arrival"]


def test_the_grace_reaches_the_idle_time_tail() -> None:
    """While the predictor's idle-time tail (P99 of the time to the next arrival) is still
    ahead, a pre-warmed instance waits for the late arrival rather than stopping and leaving
    it a cold start."""
    plan = fast_plan(["a", "b"], [("a", "b")], 3.0, PROFILES, CONFIGS, Forecast(30.0, 1, 36.0), 100.0)
    fa = plan.functions["a"]
    assert fa.stop_after_serving
    win = warm_window(plan, fa, active=True, miss_grace_s=2.0)
    served_by = plan.now + 30.0 + fa.ready_offset_s + fa.latency_s
    assert win.end == pytest.approx(plan.now + 36.0 + fa.ready_offset_s + fa.latency_s)
    idle = view("i1", "a", fa.instance_config, idle_since=win.start + fa.init_s)
    assert not decided(plan, served_by + 5.0, [idle], miss_grace_s=2.0).stops
    assert [s.reason for s in decided(plan, win.end + 0.01, [idle], miss_grace_s=2.0).stops] == ["no arrival"]


def test_keep_alive_keeps_warm_then_expires() -> None:
    plan = plan_for(1.2)  # shorter than init + inference: kept alive
    fa = plan.functions["a"]
    assert fa.mode is Mode.KEEP_ALIVE and not fa.stop_after_serving
    win = warm_window(plan, fa, active=True, miss_grace_s=2.0)
    cfg = fa.instance_config
    d = decided(plan, plan.now, [])
    assert sorted(s.function for s in d.starts) == ["a", "b"]  # warm right away
    inst = view("i1", "a", cfg, idle_since=plan.now + 0.2, served=5)
    assert not decided(plan, win.end - 0.01, [inst]).stops
    after = win.end + fa.keep_alive_s + 0.3
    d2 = decided(plan, after, [inst])
    assert [s.reason for s in d2.stops] == ["keep-alive expired"]
    assert not [s for s in d2.starts if s.function == "a"]


def test_inactive_app_is_not_prewarmed_but_its_instances_follow_the_rules() -> None:
    plan = plan_for(30.0)
    assert not decided(plan, plan.now + 29.0, [], active=False).starts
    used = view("i1", "a", plan.functions["a"].instance_config, idle_since=plan.now, served=1)
    assert [s.reason for s in decided(plan, plan.now + 1, [used], active=False).stops] == ["served"]


def test_no_predicted_arrival_never_starts() -> None:
    plan = plan_for(math.inf)
    d = decided(plan, plan.now + 5.0, [])
    assert not d.starts and d.wake_at == math.inf


def test_scaled_group_is_started_to_the_planned_count_and_surplus_scaled_down() -> None:
    plan = plan_for(30.0, count=4)
    fa = plan.functions["a"]
    assert fa.instances >= 1
    win = warm_window(plan, fa, active=True, miss_grace_s=2.0)
    d = decided(plan, win.start + 0.01, [])
    assert sum(1 for s in d.starts if s.function == "a") == fa.instances
    extra = [
        view(f"i{k}", "a", fa.instance_config, idle_since=win.start, batch=fa.batch)
        for k in range(fa.instances + 2)
    ]
    d2 = decided(plan, win.start + 0.01, extra)
    assert sum(1 for s in d2.stops if s.reason == "scale down") == 2


def test_a_ready_instance_is_not_scaled_down_for_one_still_starting() -> None:
    """With one instance wanted and two there, the surplus is the one still starting, not
    the ready one: stopping that would leave the arrival to wait out the other's init."""
    plan = plan_for(30.0)
    fa = plan.functions["a"]
    win = warm_window(plan, fa, active=True, miss_grace_s=2.0)
    assert fa.stop_after_serving and win.count == 1
    t = win.start + 0.5
    ready = view("ready", "a", fa.instance_config, idle_since=t - 0.2)
    starting = view("starting", "a", fa.instance_config, ready=False, idle_since=None, started_at=t - 0.1)
    assert not decided(plan, t, [ready, starting]).stops
    # both ready: one is surplus, and it goes
    both = decided(plan, t, [ready, view("later", "a", fa.instance_config, idle_since=t - 0.1)])
    assert [s.reason for s in both.stops] == ["scale down"]


def test_capacity_is_counted_in_batch_slots() -> None:
    """The plan serves 4 together on one batch-4 instance (0.81 s); instances of batch 1
    (started for another forecast) hold one slot each. One leaves three requests short, more
    than a second round takes: another instance starts. Three leave one short, which a second
    round serves (0.21 s + 0.21 s, inside the plan's 0.81 s): none starts."""
    plan = plan_for(30.0, count=4)
    fa = plan.functions["a"]
    assert (fa.instances, fa.batch) == (1, 4)
    win = warm_window(plan, fa, active=True, miss_grace_s=2.0)
    one = [view("i0", "a", fa.instance_config, idle_since=win.start, batch=1)]
    d = decided(plan, win.start + 0.01, one)
    assert [s.function for s in d.starts if s.function == "a"] == ["a"]
    three = [view(f"i{k}", "a", fa.instance_config, idle_since=win.start, batch=1) for k in range(3)]
    assert not [s for s in decided(plan, win.start + 0.01, three).starts if s.function == "a"]
    four = [*three, view("i3", "a", fa.instance_config, idle_since=win.start, batch=1)]
    assert not [s for s in decided(plan, win.start + 0.01, four).starts if s.function == "a"]
    # a batch the caller does not know (the service's workers) is the plan's on its config
    unknown = view("u", "a", fa.instance_config, idle_since=win.start)
    assert not [s for s in decided(plan, win.start + 0.01, [unknown]).starts if s.function == "a"]


def test_a_shortfall_waits_a_second_round_only_inside_the_latency_target() -> None:
    """An instance of batch 3 where the plan wants 4 at once serves the fourth request in a
    second round: stage a then takes 0.81 s (the smallest planned batch >= 3 is 4) + 0.21 s.
    At a 3 s SLA the DAG's 1.83 s fits and no instance starts; at 1.65 s it does not (the
    plan itself takes 1.62 s), and one starts."""
    for sla, starts in ((3.0, 0), (1.65, 1)):
        plan = plan_for(30.0, count=4, sla_s=sla)
        fa = plan.functions["a"]
        assert (fa.instances, fa.batch, round(plan.latency_s, 2)) == (1, 4, 1.62)
        win = warm_window(plan, fa, active=True, miss_grace_s=2.0)
        three = view("b3", "a", fa.instance_config, idle_since=win.start, batch=3)
        d = decided(plan, win.start + 0.01, [three])
        assert len([s for s in d.starts if s.function == "a"]) == starts, sla


def test_requests_in_flight_keep_their_window() -> None:
    """A plan made at an arrival times the next one (30 s on); a request of this arrival
    still on its way to b keeps b's pre-warmed instance after it served the first, and gets
    an instance started when b has none; with nothing in flight the same instance is
    stopped after serving."""
    plan = plan_for(30.0)
    fb = plan.functions["b"]
    assert fb.stop_after_serving
    t = plan.now + fb.ready_offset_s + 0.5
    served = view("i1", "b", fb.instance_config, idle_since=t - 0.1, served=1)
    assert [s.reason for s in decided(plan, t, [served]).stops] == ["served"]
    assert not decided(plan, t, [served], inflight={"a": 0, "b": 1}).stops
    d = decided(plan, t, [], inflight={"a": 0, "b": 2})
    assert [(s.function, s.reason) for s in d.starts] == [("b", "in flight")] * -(-2 // fb.batch)
    assert not decided(plan, t, []).starts  # the next arrival's window is 30 s away


def test_requests_in_flight_count_the_instances_on_other_configs() -> None:
    """A request already on its way is served by an instance on any config: an instance the
    plan would not keep (cpu-8) still takes one of them, and only the rest get a start
    (at the moment a start is still ready before they reach b)."""
    slow_a = {  # a takes 2 s: b's start for this arrival's request can still be in time
        "a": {"cpu": profile(Kind.CPU, 0.2, 0.5, 0.5, 2.0, 1.5, 0.1)},
        "b": {"cpu": profile(Kind.CPU, 0.2, 0.5, 0.5, 0.01, 0.5, 0.05)},
    }
    plan = fast_plan(["a", "b"], [("a", "b")], 5.0, slow_a, CONFIGS, Forecast(30.0, 1, 1.0), 100.0)
    fb = plan.functions["b"]
    t = plan.now + fb.ready_offset_s - fb.init_s
    assert t > plan.now
    old = view("old", "b", "cpu-8", idle_since=t - 0.1)
    assert not [s for s in decided(plan, t, [old], inflight={"a": 0, "b": 1}).starts if s.function == "b"]
    d = decided(plan, t, [old], inflight={"a": 0, "b": 3})
    assert [(s.function, s.reason) for s in d.starts] == [("b", "in flight")] * -(-2 // fb.batch)


def test_requests_in_flight_are_started_in_the_shape_planned_for_them() -> None:
    """The plan made at an arrival times the next one; the requests of this arrival were
    sized by the plan before it (`previous`), so their in-flight starts take its config and
    batch."""
    slow_a = {  # a takes 2 s: b's start for this arrival's requests can still be in time
        "a": {"cpu": profile(Kind.CPU, 0.2, 0.5, 0.5, 2.0, 1.5, 0.1)},
        "b": {"cpu": profile(Kind.CPU, 0.2, 0.5, 0.5, 0.01, 0.5, 0.05)},
    }
    dag = (["a", "b"], [("a", "b")], 5.0, slow_a)
    previous = fast_plan(*dag, {"cpu-2": CATALOGUE["cpu-2"]}, Forecast(30.0, 7, 1.0), 70.0)
    plan = fast_plan(*dag, CONFIGS, Forecast(30.0, 1, 1.0), 100.0)
    fb, pb = plan.functions["b"], previous.functions["b"]
    assert (fb.instance_config, pb.instance_config) == ("cpu-1", "cpu-2")
    t = plan.now + fb.ready_offset_s - fb.init_s
    pending = {"a": 0, "b": 7}
    d = decided(plan, t, [], inflight=pending, previous=previous)
    shapes = [(s.config, s.batch, s.reason) for s in d.starts if s.function == "b"]
    assert shapes == [("cpu-2", pb.batch, "in flight")] * -(-7 // pb.batch)
    alone = decided(plan, t, [], inflight=pending)
    assert {(s.config, s.batch) for s in alone.starts if s.function == "b"} == {("cpu-1", None)}
    # while they start (their batch not known yet), they count as the shape they were started in
    starting = [
        view(f"s{k}", "b", "cpu-2", ready=False, idle_since=None, started_at=t) for k in range(len(shapes))
    ]
    assert not [
        s for s in decided(plan, t, starting, inflight=pending, previous=previous).starts if s.function == "b"
    ]


def test_a_much_dearer_config_is_replaced_once_the_planned_one_is_ready() -> None:
    configs = {n: CATALOGUE[n] for n in ("cpu-1", "cpu-8")}
    plan = fast_plan(["a", "b"], [("a", "b")], 3.0, PROFILES, configs, Forecast(1.2, 1, 1.0), 100.0)
    cfg = plan.functions["a"].instance_config
    assert cfg == "cpu-1"  # the SLA is easy: the cheapest config
    old = view("old", "a", "cpu-8", idle_since=plan.now)  # 8 x the price: not kept
    assert not decided(plan, plan.now + 0.1, [old]).stops  # nothing planned ready yet
    new = view("new", "a", cfg, idle_since=plan.now)
    d = decided(plan, plan.now + 0.1, [old, new])
    assert [(s.instance_id, s.reason) for s in d.stops] == [("old", "config changed")]


def test_a_config_change_that_is_not_materially_cheaper_keeps_the_instance() -> None:
    """Hysteresis: cpu-2 costs 2 x cpu-1, within CONFIG_PRICE_HYSTERESIS, and is faster: the
    ready cpu-2 instance counts as the planned one, so nothing starts and nothing stops."""
    plan = plan_for(1.2)
    fa = plan.functions["a"]
    assert fa.instance_config == "cpu-1" and fa.instances == 1
    old = view("old", "a", "cpu-2", idle_since=plan.now)
    d = decided(plan, plan.now + 0.1, [old])
    assert not d.stops
    assert not [s for s in d.starts if s.function == "a"]
    # with a planned one ready as well, the cpu-2 one is surplus: held for the break-even
    # time (max(keep-alive, init)), then scaled down (the longest idle first)
    new = view("new", "a", "cpu-1", idle_since=plan.now + 0.05)
    hold = max(fa.keep_alive_s, fa.init_s)
    assert not decided(plan, plan.now + 0.1, [old, new]).stops
    late = decided(plan, plan.now + hold + 0.01, [old, new])
    assert [(s.instance_id, s.reason) for s in late.stops] == [("old", "scale down")]


def test_functions_gone_from_the_plan_are_stopped() -> None:
    plan = plan_for(30.0)
    d = decided(plan, plan.now, [view("x", "removed", "cpu-1", idle_since=plan.now)])
    assert [(s.instance_id, s.reason) for s in d.stops] == [("x", "not in the plan")]


@settings(max_examples=150, deadline=None)
@given(
    it=st.floats(0.3, 60.0),
    count=st.sampled_from([1, 1, 2, 5]),
    offset=st.floats(-5.0, 80.0),
    n_idle=st.integers(0, 4),
    served=st.integers(0, 3),
)
def test_decisions_are_consistent(it: float, count: int, offset: float, n_idle: int, served: int) -> None:
    """Never stop a busy instance, never start and stop on one function at the same instant
    beyond scaling to the plan, never start more than the plan's count, and always wake
    in the future."""
    plan = plan_for(it, count=count)
    now = plan.now + offset
    insts = [
        view(f"i{k}", "a", plan.functions["a"].instance_config, idle_since=plan.now, served=served)
        for k in range(n_idle)
    ]
    insts.append(view("busy", "b", plan.functions["b"].instance_config, idle_since=None, served=1))
    d = decided(plan, now, insts)
    assert "busy" not in {s.instance_id for s in d.stops}
    for f, fp in plan.functions.items():
        assert sum(1 for s in d.starts if s.function == f) <= fp.instances
    assert d.wake_at > now or d.wake_at == pytest.approx(now)


def test_an_instance_on_another_config_is_judged_at_the_batch_it_serves() -> None:
    """voice-assistant at a 2 s SLA, 7 requests together: `ner` is planned off cpu-1 because a
    batch of 7 takes ~0.77 s there. A cheaper cpu-1 instance that serves 7 at once must not
    count as the planned one (one request alone is fast there, 7 together are not): a
    planned instance is started for it. One that serves a request at a time is kept. An
    instance whose batch the caller does not know gets the plan's (the gateway batches by it)."""
    from smiless.policy.search import DEFAULT_HEADROOM
    from smiless.sim import load_app

    app = load_app("voice-assistant", 2.0)
    plan = fast_plan(
        app.dag.functions,
        app.dag.edges,
        2.0,
        app.profiles,
        CATALOGUE,
        Forecast(4.0, 7, 0.0),
        100.0,
        headroom=DEFAULT_HEADROOM,
    )
    fp = plan.functions["ner"]
    assert plan.feasible and fp.batch == 7 and fp.instance_config != "cpu-1"
    cpu1 = CATALOGUE["cpu-1"].price_per_second
    assert cpu1 < CATALOGUE[fp.instance_config].price_per_second  # not replaced for its price
    t = plan.now + 0.01
    kept = [
        view(f"p{f}", f, plan.functions[f].instance_config, batch=7) for f in plan.functions if f != "ner"
    ]

    def ner_starts(batch: int | None) -> int:
        inst = InstanceView("old", "ner", "cpu-1", True, 0.0, plan.now, 3, batch, cpu1)
        return sum(1 for s in decided(plan, t, [*kept, inst]).starts if s.function == "ner")

    assert ner_starts(7) == 1
    # batch unknown (the service's view): the plan's batch of 7 is what reaches it, so with a
    # planned instance ready it is replaced, not held as a surplus
    unknown = InstanceView("old", "ner", "cpu-1", True, 0.0, plan.now, 3, None, cpu1)
    ready = view("new", "ner", fp.instance_config, idle_since=plan.now, batch=7)
    d = decided(plan, t, [*kept, unknown, ready])
    assert [(s.instance_id, s.reason) for s in d.stops if s.function == "ner"] == [("old", "config changed")]
    one = [InstanceView(f"old{k}", "ner", "cpu-1", True, 0.0, plan.now, 3, 1, cpu1) for k in range(7)]
    assert not [s for s in decided(plan, t, [*kept, *one]).starts if s.function == "ner"]


def test_instances_on_another_config_serve_until_enough_planned_ones_are_ready() -> None:
    """Three requests in flight at `a`, planned on cpu-1 one at a time; two cpu-8 instances
    (8 x the price: replaced) are stopped only once planned ones can take all three."""
    configs = {n: CATALOGUE[n] for n in ("cpu-1", "cpu-8")}
    plan = fast_plan(["a", "b"], [("a", "b")], 3.0, PROFILES, configs, Forecast(1.2, 1, 1.0), 100.0)
    fa = plan.functions["a"]
    assert (fa.instance_config, fa.batch) == ("cpu-1", 1)
    t = plan.now + 0.01
    old = [view(f"old{k}", "a", "cpu-8", idle_since=plan.now) for k in range(2)]
    new = [view(f"new{k}", "a", "cpu-1", idle_since=plan.now, batch=1) for k in range(3)]
    inflight = {"a": 3, "b": 0}
    one_ready = decided(plan, t, [*old, new[0]], inflight=inflight)
    assert not [s for s in one_ready.stops if s.reason == "config changed"]
    all_ready = decided(plan, t, [*old, *new], inflight=inflight)
    assert sorted(s.instance_id for s in all_ready.stops if s.reason == "config changed") == ["old0", "old1"]


def test_requests_in_flight_keep_the_instances_they_need_from_scale_down() -> None:
    """Right after an arrival, b's requests are still upstream and a start for them would not
    be ready in time (init 1.8 s > a's 0.41 s), so none is started; but the idle instances
    already there are what they need, and none of them is scaled down for them. Once nothing
    is in flight the surplus goes."""
    plan = plan_for(2.0, count=2)
    fb = plan.functions["b"]
    assert (fb.instances, fb.init_s > fb.ready_offset_s) == (1, True)
    now = plan.now + 0.01
    three = [view(f"b{k}", "b", fb.instance_config, idle_since=now - 100, batch=fb.batch) for k in range(3)]
    busy = decided(plan, now, three, inflight={"a": 0, "b": 3 * fb.batch})
    assert not [s for s in busy.stops if s.function == "b"]
    assert not [s for s in busy.starts if s.function == "b"]
    two = decided(plan, now, three, inflight={"a": 0, "b": 2 * fb.batch})
    assert [s.reason for s in two.stops if s.function == "b"] == ["scale down"]
    done = decided(plan, now, three, inflight={"a": 0, "b": 0})
    assert [s.reason for s in done.stops if s.function == "b"] == ["scale down"] * 2
