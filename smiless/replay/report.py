"""Accounting (pure): every scheduled invocation ends up in exactly one bucket: OK, failed
with a gRPC status code (CANCELLED for calls cut short by Ctrl-C), or not sent (the replay
was stopped before its time). The system's own figures for the window (cost, violations,
instances started) come from the gateway's `GetCostReport`, the same numbers `smiless cost`
shows; the client's view sits beside them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from smiless import accounting, appspec
from smiless.protoutil import get_seconds
from smiless.replay.schedule import Send
from smiless.sim.workload import Workload
from smiless.trace import TraceFunction
from smiless.v1 import gateway_pb2

#: A send that goes out later than this after its scheduled time counts as late.
LATE_THRESHOLD_S = 0.1


#: A replay slips when more than this fraction of its sends were late.
SLIP_FRACTION = 0.01


OK = "OK"


NOT_SENT = "NOT_SENT"


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


@dataclass
class Run:
    """What `run_schedule` did: one outcome per scheduled send, in schedule order."""

    outcomes: list[Outcome]
    started_at: float  # epoch seconds at offset 0
    last_done_at: float  # seconds after the start of the last answer (0 when none)
    interrupted: bool
    stopped_at: float | None = None  # seconds after the start when a stop came (None: none did)


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
    rest = [replace(w, start_minute=w.start_minute + lead_in_minutes) for w in workloads]
    return measured, rest


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
                row=w.source,
                start_minute=w.start_minute,
                minutes=w.minutes,
                client=client[w.app],
                gateway=(
                    figures(by_app[w.app], run.started_at, status_of.get(w.app)) if w.app in by_app else None
                ),
            )
            for w in workloads
        ],
    )


def report_window_end(run: Run, schedule_s: float, margin_s: float = 1.0) -> float:
    """The report window closes after the last slot (or the stop, when one came first) or the
    last answer, whichever is later, plus a margin for the gateway's buffered records
    (flushed every 0.2 s)."""
    sent_until = schedule_s if run.stopped_at is None else min(schedule_s, run.stopped_at)
    return run.started_at + max(sent_until, run.last_done_at) + margin_s


@dataclass
class Replayed:
    """A finished replay: its report, every send's outcome, the apps' specs as registered."""

    @property
    def sla_s(self) -> dict[str, float]:
        return {name: spec.sla_s for name, spec in self.specs.items()}

    report: ReplayReport
    outcomes: list[Outcome]
    specs: dict[str, appspec.AppSpec]
    seed: int = 0
    rows: dict[str, TraceFunction] = field(default_factory=dict)  # each app's whole trace row
    lead_in_minutes: int = 0  # trace minutes replayed before the measured window
