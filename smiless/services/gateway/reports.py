"""The gateway's status and cost reports, built from what Redis holds.

Status (per app): the current plan, live instances by state and config, and per window
ending now (1 min, 5 min, 1 h unless asked otherwise) the invocation rate, p50/p99 latency
and the SLA violation ratio. An SLA violation is an invocation that was answered after the
app's SLA or failed (docs/design.md §5). A status reads at most the app's 20,000 most recent
records; a window that held more is answered from those and marked `sampled` (its rate is
their count over the time they span).

Cost (per app and function, over a time range): instance seconds by config, cost,
invocations, cost per 1,000 invocations, cold starts, SLA violations, and a time series of
cost and latency for plots. Every cost figure is `accounting.cost` of the recorded instance
lifetimes (`Store.lifetimes()`: start command to stop, idle and init time included) clipped
to the range: no other cost arithmetic exists. Apps deleted since still appear in an
all-apps report when they have lifetimes, so the total is every instance's cost.

Conventions where the issue is silent: a function's `invocations` is its app's (every
invocation runs every stage); its `cold_starts` are its instances started inside the range
(each start is a cold start paid for, whether or not a request waited on it); the app's
`cold_invocations` are the invocations a cold instance delayed.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from smiless import accounting
from smiless.metrics import state_name
from smiless.protoutil import get_seconds, set_seconds
from smiless.server import RpcError
from smiless.services.common import seconds
from smiless.store import InvocationRecord, Store
from smiless.v1 import common_pb2, gateway_pb2, optimizer_pb2

DEFAULT_WINDOWS_S = (60.0, 300.0, 3600.0)
MAX_WINDOW_S = 7 * 86400.0
MAX_BUCKETS = 1000
# A status reads at most this many of an app's most recent records (newest first, paged):
# status is polled (`--watch`) on the gateway's own loop, and parsing 100k records there
# takes seconds. Windows that held more are answered from these, marked `sampled`.
STATUS_MAX_RECORDS = 20_000
DEFAULT_BUCKETS = 60


# --- status --------------------------------------------------------------------------------
def windows_of(request: gateway_pb2.GetStatusRequest) -> list[float]:
    """The request's windows in seconds (validated), or the defaults."""
    out = []
    for i, w in enumerate(request.windows):
        s = get_seconds(w)
        if not 0 < s <= MAX_WINDOW_S:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"windows[{i}]: {s:g} s is not in (0, {MAX_WINDOW_S:g}] s",
            )
        out.append(s)
    return sorted(set(out)) if out else list(DEFAULT_WINDOWS_S)


@dataclass(frozen=True)
class Figures:
    """Invocation figures of a set of records."""

    invocations: int
    violations: int
    cold: int
    p50: float
    p99: float

    @classmethod
    def of(cls, records: Sequence[InvocationRecord]) -> Figures:
        latencies = [r.latency_ms / 1000.0 for r in records]
        return cls(
            len(records),
            sum(not r.sla_met for r in records),
            sum(r.cold for r in records),
            accounting.percentile(latencies, 50),
            accounting.percentile(latencies, 99),
        )

    @property
    def violation_ratio(self) -> float:
        return self.violations / self.invocations if self.invocations else 0.0


def app_status(
    app: gateway_pb2.App,
    instances: Sequence[common_pb2.Instance],
    records: Sequence[InvocationRecord],
    plan: optimizer_pb2.AppPlan | None,
    windows: Sequence[float],
    now: float,
    complete: bool = True,
) -> gateway_pb2.AppStatus:
    """One app's status from its records, oldest first. `complete`: they are all the records
    of the longest window; else only the most recent ones, and a window that reaches past
    the oldest of them is `sampled`."""
    name = app.spec.name
    mine = [i for i in instances if i.app == name]
    st = gateway_pb2.AppStatus(name=name, functions=len(app.spec.functions), instances=mine)
    st.sla.CopyFrom(app.spec.sla)
    for state, n in Counter(state_name(i.state) for i in mine).items():
        st.instances_by_state[state] = n
    for config, n in Counter(i.config for i in mine).items():
        st.instances_by_config[config] = n
    if plan is not None:
        st.plan.CopyFrom(plan)
    longest = Figures(0, 0, 0, 0.0, 0.0)
    oldest = records[0].at if records else now
    for w in sorted(windows):
        sampled = not complete and oldest > now - w
        f = Figures.of([r for r in records if r.at >= now - w])
        span = max(now - oldest, 1e-3) if sampled else w
        ws = st.windows.add(
            sampled=sampled,
            invocations=f.invocations,
            rate=f.invocations / span,
            sla_violations=f.violations,
            sla_violation_ratio=f.violation_ratio,
            cold_invocations=f.cold,
        )
        set_seconds(ws.window, w)
        set_seconds(ws.p50_latency, f.p50)
        set_seconds(ws.p99_latency, f.p99)
        longest = f
    st.invocations, st.sla_violations = longest.invocations, longest.violations
    set_seconds(st.p50_latency, longest.p50)
    set_seconds(st.p99_latency, longest.p99)
    return st


async def app_statuses(
    store: Store,
    apps: Sequence[gateway_pb2.App],
    instances: Sequence[common_pb2.Instance],
    windows: Sequence[float],
    now: float,
) -> list[gateway_pb2.AppStatus]:
    """Every app's status, reading at most STATUS_MAX_RECORDS records of the longest window."""
    longest = max(windows)
    out = []
    for app in apps:
        name = app.spec.name
        records = await store.recent_invocations(name, now - longest, STATUS_MAX_RECORDS)
        complete = len(records) < STATUS_MAX_RECORDS
        plan = await store.get_plan(name)
        out.append(app_status(app, instances, records, plan, windows, now, complete))
    return out


# --- cost ----------------------------------------------------------------------------------
def _range(request: gateway_pb2.GetCostReportRequest, now: float) -> tuple[float | None, float, float | None]:
    start = seconds(request.start)
    end = seconds(request.end) or now
    if start is not None and end < start:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "end: before start")
    step = get_seconds(request.step) if request.HasField("step") else None
    if step is not None and step <= 0:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "step: must be positive")
    return start, end, step


def _buckets(start: float, end: float, step: float | None) -> list[tuple[float, float]]:
    span = max(end - start, 0.0)
    if span == 0:
        return []
    if step is None:
        step = span / DEFAULT_BUCKETS
    n = math.ceil(span / step - 1e-9)
    if n > MAX_BUCKETS:
        raise RpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"step: {step:g} s makes {n} buckets over {span:g} s; at most {MAX_BUCKETS}",
        )
    return [(start + k * step, min(start + (k + 1) * step, end)) for k in range(n)]


async def cost_report(
    store: Store, request: gateway_pb2.GetCostReportRequest, now: float
) -> gateway_pb2.GetCostReportResponse:
    """The cost report of one app (request.app) or of all apps, registered or deleted."""
    asked_start, end, step = _range(request, now)
    registered = {a.spec.name: a for a in await store.list_apps()}
    lives = [accounting.lifetime_of(i) for i in await store.lifetimes()]
    if request.app:
        if request.app not in registered and not any(x.app == request.app for x in lives):
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"app: no app named {request.app!r}")
        names = [request.app]
    else:
        names = sorted(set(registered) | {x.app for x in lives})
    lives = [x for x in lives if x.app in names]
    records = {n: await store.invocations(n, asked_start, end) for n in names}
    # Unset start: from the first thing recorded (a lifetime or an invocation).
    firsts = [x.start for x in lives] + [r[0].at for r in records.values() if r]
    start = asked_start if asked_start is not None else min(firsts, default=end)
    start = min(start, end)
    buckets = _buckets(start, end, step)

    resp = gateway_pb2.GetCostReportResponse(total_cost=0.0)
    set_seconds(resp.start, start)
    set_seconds(resp.end, end)
    for name in names:
        app = registered.get(name)
        mine = [x for x in lives if x.app == name]
        recs = records[name]
        f = Figures.of(recs)
        ac = resp.apps.add(
            app=name,
            invocations=f.invocations,
            sla_violations=f.violations,
            sla_violation_ratio=f.violation_ratio,
            cold_invocations=f.cold,
            deleted=app is None,
        )
        functions = [fn.name for fn in app.spec.functions] if app is not None else []
        functions += sorted({x.function for x in mine} - set(functions))
        for fn in functions:
            lf = [x for x in mine if x.function == fn]
            fc = ac.functions.add(
                function=fn,
                invocations=f.invocations,
                cold_starts=sum(1 for x in lf if start <= x.start <= end),
                cost=accounting.total_cost(lf, start, end, now),
            )
            for x in lf:
                secs = accounting.instance_seconds(x, start, end, now)
                if secs > 0:
                    fc.instance_seconds[x.config] = fc.instance_seconds[x.config] + secs
            fc.cost_per_1000 = fc.cost / f.invocations * 1000.0 if f.invocations else 0.0
            ac.cost += fc.cost
        ac.cost_per_1000 = ac.cost / f.invocations * 1000.0 if f.invocations else 0.0
        resp.total_cost += ac.cost
        times = [r.at for r in recs]  # oldest first (stream order)
        for k, (b0, b1) in enumerate(buckets):
            last = k == len(buckets) - 1  # the last bucket includes the range's end
            lo, hi = bisect_left(times, b0), (bisect_right if last else bisect_left)(times, b1)
            bf = Figures.of(recs[lo:hi])
            point = ac.series.add(
                cost=accounting.total_cost(mine, b0, b1, now),
                invocations=bf.invocations,
                sla_violations=bf.violations,
            )
            set_seconds(point.start, b0)
            set_seconds(point.p50_latency, bf.p50)
            set_seconds(point.p99_latency, bf.p99)
    return resp
