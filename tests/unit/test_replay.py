"""Trace replay: schedule building, late-send accounting, the client summary and the
open-loop sender (driven by plain coroutines in place of the gateway)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from smiless import replay
from smiless.replay import NOT_SENT, OK, Outcome, Result, Send, Workload
from smiless.replay.demo import DEMO_MINUTES, DEMO_ROWS, DEMO_START_MINUTE
from smiless.trace import DEFAULT_TRACE, load_trace, parse_trace

TRACE = """HashFunction,HashApp,HashOwner,minute_1,minute_2,minute_3,minute_4,minute_5
fa,aa,oa,2,0,1,4,0
fb,ab,ob,0,3,0,0,5
"""


def wl(app: str, counts: tuple[int, ...], start_minute: int = 0) -> Workload:
    """A replay window of `counts` from trace minute `start_minute` on (idle minutes before)."""
    full = np.array((0,) * start_minute + counts, dtype=np.int64)
    return Workload(full, start_minute, source=f"hash-{app}", app=app)


# --- rows and windows ------------------------------------------------------------------------
def test_select_row_by_hash_or_index() -> None:
    t = parse_trace(TRACE.splitlines())
    assert replay.select_row(t, "fb").hash_function == "fb"
    assert replay.select_row(t, "0").hash_function == "fa"
    with pytest.raises(KeyError, match="not below"):
        replay.select_row(t, "2")
    with pytest.raises(KeyError, match="no row"):
        replay.select_row(t, "nope")


def test_workload_window() -> None:
    fn = parse_trace(TRACE.splitlines()).functions[0]
    w = replay.make_workload("a", fn, 2, 2)
    assert (w.app, w.source, w.start_minute, tuple(w.window), w.invocations) == ("a", "fa", 2, (1, 4), 5)
    assert tuple(w.counts) == (2, 0, 1, 4), "the minutes before the window are its history"
    assert tuple(replay.make_workload("a", fn, 1, None).window) == (0, 1, 4, 0)
    with pytest.raises(ValueError, match=r"^minutes"):
        replay.make_workload("a", fn, 3, 3)
    with pytest.raises(ValueError, match=r"^minutes"):
        replay.make_workload("a", fn, 0, 0)
    with pytest.raises(ValueError, match=r"^start_minute"):
        replay.make_workload("a", fn, 5, 1)


# --- schedules -------------------------------------------------------------------------------
def test_together_fires_each_slot_at_its_start() -> None:
    s = replay.build_schedule([wl("a", (2, 0, 1))], slot_seconds=2.0)
    assert [(x.at, x.slot) for x in s] == [(0.0, 0), (0.0, 0), (4.0, 2)]
    assert [x.seq for x in s] == [0, 1, 2]


@pytest.mark.parametrize("slot_seconds", [0.5, 2.0, 60.0])
def test_compression_scales_times_not_counts(slot_seconds: float) -> None:
    counts = (1, 3, 0, 2)
    s = replay.build_schedule([wl("a", counts)], slot_seconds)
    assert len(s) == sum(counts)
    assert sorted({x.at for x in s}) == [i * slot_seconds for i, c in enumerate(counts) if c]
    assert replay.window_seconds([wl("a", counts)], slot_seconds) == 4 * slot_seconds


def test_poisson_stays_inside_each_slot_and_keeps_counts() -> None:
    counts = (5, 0, 7, 1, 0, 9)
    s = replay.build_schedule([wl("a", counts)], 2.0, "poisson", seed=3)
    per_slot = [sum(1 for x in s if x.slot == i) for i in range(len(counts))]
    assert per_slot == list(counts)
    for x in s:
        assert x.slot * 2.0 <= x.at < (x.slot + 1) * 2.0
    assert len({x.at for x in s}) == len(s)  # spread out, not a burst
    assert [x.at for x in s] == sorted(x.at for x in s)


def test_poisson_is_seeded_and_per_app() -> None:
    a, b = wl("a", (4, 4, 4)), wl("b", (3, 0, 3))
    one = replay.build_schedule([a], 2.0, "poisson", seed=1)
    assert one == replay.build_schedule([a], 2.0, "poisson", seed=1)
    assert [x.at for x in one] != [x.at for x in replay.build_schedule([a], 2.0, "poisson", seed=2)]
    both = replay.build_schedule([a, b], 2.0, "poisson", seed=1)
    assert [x.at for x in both if x.app == "a"] == [x.at for x in one]


def test_several_apps_merge_in_time_order() -> None:
    s = replay.build_schedule([wl("a", (1, 0, 2)), wl("b", (0, 3))], 2.0)
    assert [x.at for x in s] == sorted(x.at for x in s)
    assert [x.seq for x in s] == list(range(6))
    assert [(x.app, x.at) for x in s] == [
        ("a", 0.0),
        ("b", 2.0),
        ("b", 2.0),
        ("b", 2.0),
        ("a", 4.0),
        ("a", 4.0),
    ]
    assert replay.window_seconds([wl("a", (1, 0, 2)), wl("b", (0, 3))], 2.0) == 6.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="slot_seconds"):
        replay.build_schedule([wl("a", (1,))], 0.0)
    with pytest.raises(ValueError, match="spread"):
        replay.build_schedule([wl("a", (1,))], 1.0, "uniform")  # type: ignore[arg-type]


# --- late sends and accounting ---------------------------------------------------------------
def test_lateness_counts_and_slip() -> None:
    on_time = replay.lateness([0.0, 0.01, 0.02] * 100, threshold_s=0.1)
    assert (on_time.sends, on_time.late, on_time.slipped) == (300, 0, False)
    assert on_time.max_s == pytest.approx(0.02)
    one_late = replay.lateness([0.0] * 199 + [0.5], threshold_s=0.1)
    assert (one_late.late, one_late.slipped) == (1, False)  # 0.5 % of the sends
    slipped = replay.lateness([0.0] * 90 + [0.2] * 10, threshold_s=0.1)
    assert (slipped.late, slipped.slipped, slipped.p99_s, slipped.max_s) == (10, True, 0.2, 0.2)
    assert replay.lateness([-0.003]).max_s == 0.0  # clock jitter is not earliness
    assert replay.lateness([]).slipped is False


def test_summary_accounts_for_every_scheduled_send() -> None:
    s = replay.build_schedule([wl("a", (3, 2)), wl("b", (1,))], 1.0)
    a = [x for x in s if x.app == "a"]
    outcomes = [
        Outcome(a[0], OK, 0.01, 1.0, 1.0, sla_met=True, cold=True),
        Outcome(a[1], OK, 0.30, 2.0, 5.0, sla_met=False),
        Outcome(a[2], "UNAVAILABLE", 0.02, 0.5),
        Outcome(a[3], "CANCELLED", 1.0, 1.5),
        Outcome(a[4], NOT_SENT),
        *(Outcome(x, OK, x.at, x.at + 0.2, 0.2, sla_met=True) for x in s if x.app == "b"),
    ]
    got = replay.summarize(outcomes, ["a", "b"], threshold_s=0.1)
    ca = got["a"]
    assert (ca.scheduled, ca.sent, ca.ok, ca.not_sent) == (5, 4, 2, 1)
    assert ca.failed == {"CANCELLED": 1, "UNAVAILABLE": 1}
    assert ca.accounted
    assert ca.sla_violations == 3  # one slow answer and two failed calls
    assert ca.violation_ratio == pytest.approx(3 / 4)
    assert (ca.cold, ca.p50_ms, ca.p99_ms) == (1, 1000.0, 5000.0)
    assert (ca.lateness.sends, ca.lateness.late) == (4, 1)  # a[1] went out 0.3 s late
    assert got["b"].accounted and got["b"].sla_violations == 0


def test_report_json_carries_the_derived_figures() -> None:
    s = replay.build_schedule([wl("a", (2,))], 1.0)
    run = replay.Run([Outcome(s[0], OK, 0.0, 0.1, 0.1, True), Outcome(s[1], NOT_SENT)], 1000.0, 0.1, True)
    report = replay.make_report(run, [wl("a", (2,))], 1.0, "together", 1001.5, None)
    doc = report.to_dict()
    assert doc["interrupted"] is True and doc["accounted"] is True
    assert doc["window_s"] == pytest.approx(1.5)
    assert doc["apps"][0]["client"]["not_sent"] == 1
    assert doc["apps"][0]["gateway"] is None
    assert replay.report_window_end(run, schedule_s=1.0, margin_s=0.5) == pytest.approx(1001.5)


# --- the sender ------------------------------------------------------------------------------
def slow_invoker(delay_s: float) -> replay.Invoker:
    """Stands in for a system that answers every call after delay_s."""

    async def invoke(s: Send) -> Result:
        await asyncio.sleep(delay_s)
        return Result(OK, delay_s, sla_met=True)

    return invoke


def test_sender_is_open_loop() -> None:
    """Slow answers do not hold back later sends: all go out before the first answer."""
    schedule = replay.build_schedule([wl("a", (2, 1, 1))], slot_seconds=0.05)
    run = asyncio.run(replay.run_schedule(schedule, slow_invoker(0.5)))
    assert [o.status for o in run.outcomes] == [OK] * 4
    first_answer = min(o.done_at for o in run.outcomes if o.done_at is not None)
    assert all(o.sent_at is not None and o.sent_at < first_answer for o in run.outcomes)
    assert all(o.late_s is not None and o.late_s >= 0 for o in run.outcomes)
    assert not run.interrupted and run.stopped_at is None
    assert replay.summarize(run.outcomes, ["a"])["a"].accounted


def test_stop_cancels_in_flight_and_leaves_the_rest_unsent() -> None:
    schedule = replay.build_schedule([wl("a", (2, 0, 0, 3))], slot_seconds=5.0)

    async def go() -> replay.Run:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        return await replay.run_schedule(schedule, slow_invoker(30.0), stop=stop, grace_s=0.1)

    run = asyncio.run(go())
    assert run.interrupted
    assert run.stopped_at is not None and 0.2 <= run.stopped_at < 5.0  # before the next slot
    # The report window closes at the stop (or the last answer), not at the schedule's end.
    assert replay.report_window_end(run, schedule_s=20.0, margin_s=0.0) < run.started_at + 5.0
    assert [o.status for o in run.outcomes] == ["CANCELLED"] * 2 + [NOT_SENT] * 3
    c = replay.summarize(run.outcomes, ["a"])["a"]
    assert c.accounted and (c.sent, c.not_sent) == (2, 3)


def test_an_invoker_error_is_an_outcome_not_a_crash() -> None:
    async def broken(s: Send) -> Result:
        raise RuntimeError("adapter bug")

    run = asyncio.run(replay.run_schedule(replay.build_schedule([wl("a", (1,))], 1.0), broken))
    assert run.outcomes[0].status == "CLIENT_ERROR:RuntimeError"


# --- fidelity --------------------------------------------------------------------------------
def gateway_figures(cost: float, violations: int, invocations: int = 100) -> replay.GatewayFigures:
    return replay.GatewayFigures(
        invocations=invocations,
        sla_violations=violations,
        violation_ratio=violations / invocations,
        cost=cost,
        cost_per_1000=cost / invocations * 1000,
        cold_invocations=0,
        instances_started=1,
        instance_seconds={},
        p50_ms=None,
        p99_ms=None,
    )


def test_fidelity_errors_and_target() -> None:
    sim = replay.SimFigures(100, cost=1.0, violation_ratio=0.01, p50_ms=1.0, p99_ms=2.0, instances_started=3)
    assert sim.cost_per_1000 == pytest.approx(10.0)
    close = replay.Fidelity("a", gateway_figures(1.15, 3), sim)
    assert close.cost_error == pytest.approx(0.15)
    assert close.violation_error == pytest.approx(0.02)
    assert close.within_target
    assert not replay.Fidelity("a", gateway_figures(1.25, 1), sim).within_target  # cost 25 % over
    assert not replay.Fidelity("a", gateway_figures(1.0, 5), sim).within_target  # 4 points over
    free = replay.SimFigures(100, 0.0, 0.0, 0.0, 0.0, 0)
    assert replay.Fidelity("a", gateway_figures(0.5, 0), free).cost_error == float("inf")
    doc = close.to_dict()
    assert doc["within_target"] is True and doc["simulated"]["cost_per_1000"] == pytest.approx(10.0)


def test_fidelity_pairs_apps_with_both_reports() -> None:
    s = replay.build_schedule([wl("a", (1,)), wl("b", (1,))], 1.0)
    run = replay.Run([Outcome(x, OK, 0.0, 0.1, 0.1, True) for x in s], 0.0, 0.1, False)
    report = replay.make_report(run, [wl("a", (1,)), wl("b", (1,))], 1.0, "together", 2.0, None)
    sim = {"a": replay.SimFigures(1, 1.0, 0.0, 1.0, 1.0, 1)}
    assert replay.fidelity(report, sim) == []  # no gateway report: nothing to compare
    with_gateway = replay.ReplayReport(
        0.0,
        2.0,
        1.0,
        "together",
        False,
        [replace(a, gateway=gateway_figures(1.0, 0, 1)) for a in report.apps],
    )
    assert [f.app for f in replay.fidelity(with_gateway, sim)] == ["a"]


# --- the demo's fixed window -----------------------------------------------------------------
def test_demo_window_is_the_documented_one() -> None:
    """The rows and counts that smiless/replay/demo.py's docstring (and the README) promise."""
    trace = load_trace(DEFAULT_TRACE)
    documented = {
        "voice-assistant": (54, (1, 2, 3, 0, 8, 1, 2, 3, 0, 8)),
        "amber-alert": (575, (0, 1, 1, 1, 3, 1, 1, 2, 2, 1)),
        "image-query": (265, (2, 1, 2, 1, 1, 1, 2, 2, 0, 2)),
    }
    assert set(DEMO_ROWS) == set(documented)
    for app, (index, counts) in documented.items():
        fn = replay.select_row(trace, DEMO_ROWS[app])
        assert fn is trace.functions[index]
        w = replay.make_workload(app, fn, DEMO_START_MINUTE, DEMO_MINUTES)
        assert tuple(w.window) == counts


def test_lead_in_is_sent_but_not_measured() -> None:
    w = wl("a", (2, 0, 1, 3), start_minute=10)
    schedule = replay.build_schedule([w], 2.0)
    outcomes = [Outcome(s, OK, s.at + 0.01, s.at + 0.5, 0.49, True) for s in schedule]
    run = replay.Run(outcomes, 1000.0, 6.5, False)
    measured, rest = replay.after_lead_in(run, [w], 2, 2.0)
    [r] = rest
    assert (r.app, r.source, r.start_minute, tuple(r.window)) == ("a", "hash-a", 12, (1, 3))
    assert np.array_equal(r.counts, w.counts), "the lead-in becomes history, the row is the same"
    assert measured.started_at == 1004.0, "the measured clock starts where the lead-in ends"
    assert [(o.send.at, o.send.slot) for o in measured.outcomes] == [(0.0, 0), (2.0, 1), (2.0, 1), (2.0, 1)]
    assert [o.sent_at for o in measured.outcomes] == pytest.approx([0.01, 2.01, 2.01, 2.01])
    assert measured.last_done_at == pytest.approx(2.5)
    summary = replay.summarize(measured.outcomes, ["a"])["a"]
    assert summary.scheduled == 4 and summary.accounted
    assert replay.after_lead_in(run, [w], 0, 2.0) == (run, [w])


def test_a_lead_in_that_leaves_nothing_to_measure_is_refused() -> None:
    from smiless.replay import ReplayError, replay_apps

    w = wl("a", (2, 0, 1, 3), start_minute=10)
    with pytest.raises(ReplayError, match="lead-in"):  # before any call to the gateway
        asyncio.run(replay_apps("127.0.0.1:1", [w], slot_seconds=2.0, spread="together", lead_in_minutes=4))


def test_demo_refuses_a_lead_in_before_the_trace() -> None:
    import subprocess
    import sys

    got = subprocess.run(
        [sys.executable, "-m", "smiless", "demo", "--lead-in-minutes", str(DEMO_START_MINUTE + 1)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode != 0
    assert "--lead-in-minutes" in got.stderr + got.stdout
