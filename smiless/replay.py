"""Trace replay: an open-loop load generator that drives apps with Azure trace rows.

Three layers, so the arithmetic can be checked without a running system:

- **Schedule building** (pure): a trace row and a window of trace minutes become send times,
  one trace minute = one slot of `slot_seconds` of wall time (2 s, as the reference's load
  generator). Within a slot the invocations go out together (a burst, the reference) or
  spread as a Poisson process (`smiless.trace.arrivals_from_counts` does both).
- **The sender** (thin async adapter): fires every send at its scheduled time on the event
  loop whatever the responses do (open loop: a slow system does not slow the load down),
  and records how late each send actually went out. A replay whose sends slip is a replay
  of a different trace, so the report says so instead of hiding it.
- **Accounting** (pure): every scheduled invocation ends up in exactly one bucket: OK,
  failed with a gRPC status code (CANCELLED for calls cut short by Ctrl-C), or not sent
  (the replay was stopped before its time). The system's own figures for the window (cost,
  violations, instances started) come from the gateway's `GetCostReport`, the same numbers
  `smiless cost` shows; the client's view sits beside them.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from smiless import accounting, appspec, tensors, zoo
from smiless.protoutil import get_seconds, set_seconds
from smiless.trace import Spread, Trace, TraceFunction, arrivals_from_counts
from smiless.v1 import gateway_pb2, gateway_pb2_grpc

#: A send that goes out later than this after its scheduled time counts as late.
LATE_THRESHOLD_S = 0.1
#: A replay slips when more than this fraction of its sends were late.
SLIP_FRACTION = 0.01
#: The call deadline exceeds the invocation's timeout by this, so the gateway answers first.
CLIENT_GRACE_S = 5.0
OK = "OK"
NOT_SENT = "NOT_SENT"


# --- schedule (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """One app driven by a window of one trace row."""

    app: str
    row: str  # the row's HashFunction
    start_minute: int  # 0-based index of the window's first trace minute
    counts: tuple[int, ...]  # invocations per trace minute of the window

    @property
    def invocations(self) -> int:
        return sum(self.counts)


def select_row(trace: Trace, row: str) -> TraceFunction:
    """A row by HashFunction or by its 0-based index in the file; KeyError says which."""
    if row.isdigit():
        i = int(row)
        if i >= len(trace):
            raise KeyError(f"row index {i} is not below the trace's {len(trace)} rows")
        return trace.functions[i]
    try:
        return trace.function(row)
    except KeyError:
        raise KeyError(f"no row with HashFunction {row!r} (nor is it an index)") from None


def make_workload(app: str, fn: TraceFunction, start_minute: int, minutes: int | None) -> Workload:
    """The window [start_minute, start_minute + minutes) of a row (to its end when minutes is None)."""
    total = len(fn.counts)
    if not 0 <= start_minute < total:
        raise ValueError(f"start_minute: {start_minute} is outside the trace's 0..{total - 1}")
    end = total if minutes is None else start_minute + minutes
    if minutes is not None and minutes < 1:
        raise ValueError(f"minutes: {minutes} is not positive")
    if end > total:
        raise ValueError(f"minutes: the window ends at minute {end}, past the trace's {total}")
    return Workload(app, fn.hash_function, start_minute, tuple(int(c) for c in fn.counts[start_minute:end]))


@dataclass(frozen=True, order=True)
class Send:
    """One scheduled invocation; `at` is seconds after the replay's start."""

    at: float
    app: str
    slot: int  # index of its trace minute within the window
    seq: int = 0  # position in the whole schedule (request ids, tie order)


def build_schedule(
    workloads: Sequence[Workload], slot_seconds: float, spread: Spread = "together", seed: int = 0
) -> tuple[Send, ...]:
    """Every workload's invocations as sends, merged in time order.

    Slot i of a window starts at i·slot_seconds. "together": all of slot i's invocations are
    due at its start; "poisson": uniformly inside it (seed + the workload's position seeds
    each app, so adding an app does not move another app's sends).

    Example: counts (2, 0, 1), slot 2 s, together -> sends at 0.0, 0.0, 4.0 in slots 0, 0, 2.
    """
    if not slot_seconds > 0:
        raise ValueError(f"slot_seconds: must be positive, got {slot_seconds}")
    sends: list[Send] = []
    for k, w in enumerate(workloads):
        times = arrivals_from_counts(w.counts, slot_seconds, spread=spread, seed=seed + k)
        last = max(0, len(w.counts) - 1)
        for t in times:
            slot = min(last, math.floor(float(t) / slot_seconds))
            sends.append(Send(float(t), w.app, slot))
    order = sorted(sends, key=lambda s: (s.at, s.app))
    return tuple(Send(s.at, s.app, s.slot, i) for i, s in enumerate(order))


def window_seconds(workloads: Sequence[Workload], slot_seconds: float) -> float:
    """Wall-clock length of the replay window: the longest workload's minutes × slot."""
    return max((len(w.counts) for w in workloads), default=0) * slot_seconds


# --- accounting (pure) -----------------------------------------------------------------------
@dataclass(frozen=True)
class Lateness:
    """How late the sends went out (seconds after their scheduled time)."""

    sends: int
    late: int  # sends later than threshold_s
    threshold_s: float
    p50_s: float
    p99_s: float
    max_s: float

    @property
    def slipped(self) -> bool:
        """More than SLIP_FRACTION of the sends were late: the load was not the trace's."""
        return self.late > 0 and self.late > SLIP_FRACTION * self.sends


def lateness(delays: Sequence[float], threshold_s: float = LATE_THRESHOLD_S) -> Lateness:
    """Summarise send delays. Early sends (negative) count as 0: the sender never sends early."""
    d = [max(0.0, x) for x in delays]
    return Lateness(
        sends=len(d),
        late=sum(1 for x in d if x > threshold_s),
        threshold_s=threshold_s,
        p50_s=accounting.percentile(d, 50),
        p99_s=accounting.percentile(d, 99),
        max_s=max(d, default=0.0),
    )


@dataclass(frozen=True)
class Result:
    """What the gateway answered to one send."""

    status: str  # OK or a gRPC status code name
    latency_s: float | None = None  # end-to-end latency the gateway measured (OK only)
    sla_met: bool = False
    cold: bool = False


@dataclass(frozen=True)
class Outcome:
    """One scheduled send and what became of it."""

    send: Send
    status: str  # OK, a gRPC status code name, or NOT_SENT
    sent_at: float | None = None  # seconds after the start; None when not sent
    done_at: float | None = None
    latency_s: float | None = None
    sla_met: bool = False
    cold: bool = False

    @property
    def late_s(self) -> float | None:
        return None if self.sent_at is None else self.sent_at - self.send.at


@dataclass(frozen=True)
class ClientSummary:
    """The client's view of one app's replay: every scheduled send accounted for."""

    app: str
    scheduled: int
    sent: int
    ok: int
    failed: dict[str, int]  # gRPC status code name -> count
    not_sent: int
    sla_violations: int  # OK answers over the SLA plus failed calls
    cold: int  # OK answers in which some stage waited for a starting instance
    p50_ms: float  # gateway-measured latency of the OK answers
    p99_ms: float
    lateness: Lateness

    @property
    def accounted(self) -> bool:
        return self.scheduled == self.ok + sum(self.failed.values()) + self.not_sent

    @property
    def violation_ratio(self) -> float:
        return self.sla_violations / self.sent if self.sent else 0.0


def summarize(
    outcomes: Sequence[Outcome], apps: Sequence[str], threshold_s: float = LATE_THRESHOLD_S
) -> dict[str, ClientSummary]:
    """Per app (in the given order), the client-side counts, latencies and lateness."""
    out: dict[str, ClientSummary] = {}
    for app in apps:
        mine = [o for o in outcomes if o.send.app == app]
        sent = [o for o in mine if o.status != NOT_SENT]
        ok = [o for o in sent if o.status == OK]
        failed = Counter(o.status for o in sent if o.status != OK)
        lat = [o.latency_s * 1000.0 for o in ok if o.latency_s is not None]
        out[app] = ClientSummary(
            app=app,
            scheduled=len(mine),
            sent=len(sent),
            ok=len(ok),
            failed=dict(sorted(failed.items())),
            not_sent=len(mine) - len(sent),
            sla_violations=sum(1 for o in ok if not o.sla_met) + sum(failed.values()),
            cold=sum(1 for o in ok if o.cold),
            p50_ms=accounting.percentile(lat, 50),
            p99_ms=accounting.percentile(lat, 99),
            lateness=lateness([o.late_s for o in sent if o.late_s is not None], threshold_s),
        )
    return out


@dataclass(frozen=True)
class CostPoint:
    """One bucket of the gateway's series: offset (s after the replay start) and figures."""

    offset_s: float
    cost: float
    invocations: int
    p50_ms: float
    p99_ms: float
    sla_violations: int


@dataclass(frozen=True)
class GatewayFigures:
    """What the gateway reports for one app over the replay window: `GetCostReport` for the
    window (cost, invocations, violations, cold invocations, instances started, the series)
    and `GetStatus` with a window ending when the report is made (p50/p99)."""

    invocations: int
    sla_violations: int
    violation_ratio: float
    cost: float
    cost_per_1000: float
    cold_invocations: int
    instances_started: int
    instance_seconds: dict[str, float]  # by hardware config
    p50_ms: float | None  # None when GetStatus could not be asked
    p99_ms: float | None
    series: list[CostPoint] = field(default_factory=list)


def figures(
    app_cost: gateway_pb2.AppCost, started_at: float, status: gateway_pb2.AppStatus | None
) -> GatewayFigures:
    """The gateway's figures for one app; `status` is its GetStatus entry (windowed)."""
    seconds: dict[str, float] = {}
    for fc in app_cost.functions:
        for config, s in fc.instance_seconds.items():
            seconds[config] = seconds.get(config, 0.0) + s
    return GatewayFigures(
        invocations=app_cost.invocations,
        sla_violations=app_cost.sla_violations,
        violation_ratio=app_cost.sla_violation_ratio,
        cost=app_cost.cost,
        cost_per_1000=app_cost.cost_per_1000,
        cold_invocations=app_cost.cold_invocations,
        instances_started=sum(fc.cold_starts for fc in app_cost.functions),
        instance_seconds=dict(sorted(seconds.items())),
        p50_ms=get_seconds(status.p50_latency) * 1000.0 if status is not None else None,
        p99_ms=get_seconds(status.p99_latency) * 1000.0 if status is not None else None,
        series=[
            CostPoint(
                get_seconds(p.start) - started_at,
                p.cost,
                p.invocations,
                get_seconds(p.p50_latency) * 1000.0,
                get_seconds(p.p99_latency) * 1000.0,
                p.sla_violations,
            )
            for p in app_cost.series
        ],
    )


@dataclass(frozen=True)
class AppReport:
    app: str
    row: str
    start_minute: int
    minutes: int
    client: ClientSummary
    gateway: GatewayFigures | None  # None when the gateway could not be asked


@dataclass(frozen=True)
class ReplayReport:
    """The replay window, what the client saw and what the gateway reports for it."""

    started_at: float  # epoch seconds of the first slot's start
    ended_at: float  # epoch seconds of the report window's end (last answer or last slot)
    slot_seconds: float
    spread: str
    interrupted: bool
    apps: list[AppReport] = field(default_factory=list)

    @property
    def window_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def slipped(self) -> bool:
        return any(a.client.lateness.slipped for a in self.apps)

    @property
    def accounted(self) -> bool:
        return all(a.client.accounted for a in self.apps)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(window_s=self.window_s, slipped=self.slipped, accounted=self.accounted)
        for a, d in zip(self.apps, doc["apps"], strict=True):
            d["client"].update(
                accounted=a.client.accounted,
                violation_ratio=a.client.violation_ratio,
                lateness=asdict(a.client.lateness) | {"slipped": a.client.lateness.slipped},
            )
        return doc


# --- fidelity: the measured report against the simulator's (pure) --------------------------
#: Done-when of the replay issue: the measured cost within this of the simulated one ...
COST_TOLERANCE = 0.20
#: ... and the violation ratio within this many points (as a fraction).
VIOLATION_TOLERANCE = 0.03


@dataclass(frozen=True)
class SimFigures:
    """The simulator's figures for one app over a window as long as the measured one."""

    invocations: int
    cost: float
    violation_ratio: float
    p50_ms: float
    p99_ms: float
    instances_started: int

    @property
    def cost_per_1000(self) -> float:
        return self.cost / self.invocations * 1000.0 if self.invocations else 0.0


@dataclass(frozen=True)
class Fidelity:
    """Measured against simulated, for one app."""

    app: str
    measured: GatewayFigures
    simulated: SimFigures

    @property
    def cost_error(self) -> float:
        """(measured - simulated) / simulated; inf when the simulator says 0 and we paid."""
        if self.simulated.cost == 0:
            return 0.0 if self.measured.cost == 0 else math.inf
        return (self.measured.cost - self.simulated.cost) / self.simulated.cost

    @property
    def violation_error(self) -> float:
        """Measured minus simulated violation ratio (a fraction; 0.03 = 3 points)."""
        return self.measured.violation_ratio - self.simulated.violation_ratio

    @property
    def within_target(self) -> bool:
        return abs(self.cost_error) <= COST_TOLERANCE and abs(self.violation_error) <= VIOLATION_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "simulated": asdict(self.simulated) | {"cost_per_1000": self.simulated.cost_per_1000},
            "cost_error": self.cost_error,
            "violation_error": self.violation_error,
            "within_target": self.within_target,
        }


def fidelity(report: ReplayReport, simulated: dict[str, SimFigures]) -> list[Fidelity]:
    """One comparison per app that has both a gateway report and a simulated one."""
    return [
        Fidelity(a.app, a.gateway, simulated[a.app])
        for a in report.apps
        if a.gateway is not None and a.app in simulated
    ]


# --- the sender (thin async adapter) ---------------------------------------------------------
Invoker = Callable[[Send], Awaitable[Result]]


@dataclass
class Run:
    """What `run_schedule` did: one outcome per scheduled send, in schedule order."""

    outcomes: list[Outcome]
    started_at: float  # epoch seconds at offset 0
    last_done_at: float  # seconds after the start of the last answer (0 when none)
    interrupted: bool
    stopped_at: float | None = None  # seconds after the start when a stop came (None: none did)


async def run_schedule(
    schedule: Sequence[Send],
    invoke: Invoker,
    *,
    stop: asyncio.Event | None = None,
    grace_s: float = 5.0,
    on_sent: Callable[[Send], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> Run:
    """Send every invocation at its time, open loop; when `stop` is set, send no more, give
    the calls in flight `grace_s` to answer, then cancel them (they count as CANCELLED).

    The send time is taken when the call's task starts running, so event-loop lag shows
    up as lateness instead of being hidden.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    wall0 = time.time()
    done: dict[int, Outcome] = {}
    tasks: list[asyncio.Task[None]] = []

    async def one(s: Send) -> None:
        sent = loop.time() - t0
        if on_sent is not None:
            on_sent(s)
        try:
            r = await invoke(s)
        except asyncio.CancelledError:
            done[s.seq] = Outcome(s, grpc.StatusCode.CANCELLED.name, sent, loop.time() - t0)
            raise
        except Exception as exc:  # an adapter bug must not lose the invocation
            r = Result(f"CLIENT_ERROR:{type(exc).__name__}")
        o = Outcome(s, r.status, sent, loop.time() - t0, r.latency_s, r.sla_met, r.cold)
        done[s.seq] = o
        if on_done is not None:
            on_done(o)

    stop_wait = asyncio.ensure_future(stop.wait())
    stopped: list[float] = []
    stop_wait.add_done_callback(lambda f: None if f.cancelled() else stopped.append(loop.time() - t0))
    try:
        for s in schedule:
            delay = t0 + s.at - loop.time()
            if delay > 0:
                await asyncio.wait({stop_wait}, timeout=delay)
            if stop.is_set():
                break
            tasks.append(asyncio.create_task(one(s)))
        pending = {t for t in tasks if not t.done()}
        if pending:
            # Not interrupted: wait for every answer (each call has its own deadline) unless a
            # stop comes; interrupted: give the calls in flight grace_s.
            while not stop.is_set() and (pending := {t for t in tasks if not t.done()}):
                await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            pending = {t for t in tasks if not t.done()}
            if pending:
                await asyncio.wait(pending, timeout=grace_s)
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stop_wait.cancel()
        for t in tasks:
            t.cancel()
    outcomes = [done.get(s.seq) or Outcome(s, NOT_SENT) for s in schedule]
    last = max((o.done_at for o in outcomes if o.done_at is not None), default=0.0)
    return Run(outcomes, wall0, last, stop.is_set(), stopped[0] if stopped else None)


def after_lead_in(
    run: Run, workloads: Sequence[Workload], lead_in_minutes: int, slot_seconds: float
) -> tuple[Run, list[Workload]]:
    """The measured part of a replay whose first `lead_in_minutes` trace minutes were traffic
    to bring the system to its steady state (instances up, predictor and controller in the
    rhythm), not measurements: the outcomes of the sends after it, on a clock that starts
    where it ends, and the workloads that remain. A silent warm-up instead would make the
    controller see the app go idle and stop what it just warmed."""
    if lead_in_minutes <= 0:
        return run, list(workloads)
    cut = lead_in_minutes * slot_seconds

    def shifted(t: float | None) -> float | None:
        return None if t is None else t - cut

    kept = [
        replace(
            o,
            send=replace(o.send, at=o.send.at - cut, slot=o.send.slot - lead_in_minutes),
            sent_at=shifted(o.sent_at),
            done_at=shifted(o.done_at),
        )
        for o in run.outcomes
        if o.send.slot >= lead_in_minutes
    ]
    last = max((o.done_at for o in kept if o.done_at is not None), default=0.0)
    stopped = None if run.stopped_at is None else max(0.0, run.stopped_at - cut)
    measured = Run(kept, run.started_at + cut, max(0.0, last), run.interrupted, stopped)
    rest = [
        Workload(w.app, w.row, w.start_minute + lead_in_minutes, w.counts[lead_in_minutes:])
        for w in workloads
    ]
    return measured, rest


class GatewayInvoker:
    """Invokes apps through the gateway with each app's example input (made once)."""

    def __init__(
        self, channel: grpc.aio.Channel, requests: dict[str, gateway_pb2.InvokeRequest], timeout_s: float
    ) -> None:
        self.stub = gateway_pb2_grpc.GatewayStub(channel)
        self.requests = requests
        self.timeout_s = timeout_s
        self.run_id = uuid.uuid4().hex[:8]

    async def __call__(self, s: Send) -> Result:
        req = gateway_pb2.InvokeRequest()
        req.CopyFrom(self.requests[s.app])
        req.request_id = f"replay-{self.run_id}-{s.seq}"
        # The gateway enforces timeout_s itself (and records the failure); the call's own
        # deadline is later so that the gateway, not the client, decides a slow invocation.
        set_seconds(req.timeout, self.timeout_s)
        try:
            resp = await self.stub.Invoke(req, timeout=self.timeout_s + CLIENT_GRACE_S)
        except grpc.aio.AioRpcError as exc:
            return Result(exc.code().name)
        return Result(OK, get_seconds(resp.latency), resp.sla_met, resp.cold)


async def example_requests(
    stub: gateway_pb2_grpc.GatewayStub, apps: Sequence[str], seed: int = 0
) -> dict[str, gateway_pb2.InvokeRequest]:
    """One InvokeRequest per app with its entry model's example input."""
    out: dict[str, gateway_pb2.InvokeRequest] = {}
    for name in apps:
        got = await stub.GetApp(gateway_pb2.GetAppRequest(name=name), timeout=10)
        spec = appspec.from_proto(got.app.spec)
        x = zoo.MODELS[spec.model_of(spec.entry)].example_input(seed)
        out[name] = gateway_pb2.InvokeRequest(app=name, input=tensors.to_proto(x))
    return out


async def cost_report(
    stub: gateway_pb2_grpc.GatewayStub, start: float, end: float, step_s: float | None = None
) -> gateway_pb2.GetCostReportResponse:
    """The gateway's cost report for every app over [start, end] (epoch seconds), with its
    series in buckets of step_s (the gateway's default when None)."""
    req = gateway_pb2.GetCostReportRequest()
    set_seconds(req.start, start)
    set_seconds(req.end, end)
    if step_s is not None:
        set_seconds(req.step, step_s)
    resp: gateway_pb2.GetCostReportResponse = await stub.GetCostReport(req, timeout=30)
    return resp


def make_report(
    run: Run,
    workloads: Sequence[Workload],
    slot_seconds: float,
    spread: str,
    window_end: float,
    costs: gateway_pb2.GetCostReportResponse | None,
    status: gateway_pb2.GetStatusResponse | None = None,
    threshold_s: float = LATE_THRESHOLD_S,
) -> ReplayReport:
    apps = [w.app for w in workloads]
    client = summarize(run.outcomes, apps, threshold_s)
    by_app = {a.app: a for a in costs.apps} if costs is not None else {}
    status_of = {a.name: a for a in status.apps} if status is not None else {}
    return ReplayReport(
        started_at=run.started_at,
        ended_at=window_end,
        slot_seconds=slot_seconds,
        spread=spread,
        interrupted=run.interrupted,
        apps=[
            AppReport(
                app=w.app,
                row=w.row,
                start_minute=w.start_minute,
                minutes=len(w.counts),
                client=client[w.app],
                gateway=(
                    figures(by_app[w.app], run.started_at, status_of.get(w.app)) if w.app in by_app else None
                ),
            )
            for w in workloads
        ],
    )


async def window_status(
    stub: gateway_pb2_grpc.GatewayStub, app: str, window_s: float
) -> gateway_pb2.GetStatusResponse:
    """GetStatus for one app with one window ending now (p50/p99 over the replay)."""
    req = gateway_pb2.GetStatusRequest(app=app)
    set_seconds(req.windows.add(), window_s)
    resp: gateway_pb2.GetStatusResponse = await stub.GetStatus(req, timeout=30)
    return resp


def report_window_end(run: Run, schedule_s: float, margin_s: float = 1.0) -> float:
    """The report window closes after the last slot (or the stop, when one came first) or the
    last answer, whichever is later, plus a margin for the gateway's buffered records
    (flushed every 0.2 s)."""
    sent_until = schedule_s if run.stopped_at is None else min(schedule_s, run.stopped_at)
    return run.started_at + max(sent_until, run.last_done_at) + margin_s


# --- the timeline plot -----------------------------------------------------------------------
def plot_timeline(
    report: ReplayReport, outcomes: Sequence[Outcome], sla_s: dict[str, float], out: Path
) -> None:
    """Two panels over the replay: each app's cumulative cost (the gateway's cost series) and
    every invocation's end-to-end latency (dots; x: failed, at the client's time to the error)
    against its SLA (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cost, ax_lat) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for a in report.apps:
        if a.gateway is None or not a.gateway.series:
            continue
        pts = sorted(a.gateway.series, key=lambda p: p.offset_s)
        total, xs, ys = 0.0, [pts[0].offset_s], [0.0]
        for k, p in enumerate(pts):
            total += p.cost
            xs.append(pts[k + 1].offset_s if k + 1 < len(pts) else report.window_s)
            ys.append(total)
        ax_cost.plot(xs, ys, marker=".", label=f"{a.app} ({total:.5f})")
    ax_cost.set_ylabel("cumulative cost")
    ax_cost.set_title(f"replay of {report.window_s:.0f} s, {report.slot_seconds:g} s per trace minute")
    ax_cost.grid(alpha=0.3)
    ax_cost.legend(fontsize=8)
    for app, sla in sla_s.items():
        ok = [o for o in outcomes if o.send.app == app and o.latency_s is not None]
        dots = ax_lat.scatter([o.sent_at or 0.0 for o in ok], [o.latency_s for o in ok], s=10, label=app)
        ax_lat.axhline(sla, color=dots.get_facecolor()[0], linestyle="--", alpha=0.5)
        bad = [o for o in outcomes if o.send.app == app and o.status not in (OK, NOT_SENT)]
        if bad:
            ax_lat.scatter(
                [o.sent_at or 0.0 for o in bad],
                [(o.done_at or 0.0) - (o.sent_at or 0.0) for o in bad],
                marker="x",
                color="red",
                s=20,
                label=f"{app} failed",
            )
    ax_lat.set_ylabel("latency (s)")
    ax_lat.set_xlabel("seconds since the replay started")
    ax_lat.grid(alpha=0.3)
    ax_lat.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
