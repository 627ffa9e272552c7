"""`smiless status` and `smiless cost`: the gateway's reports as Rich tables, JSON for
scripts (`--json`), a live view (`--watch`) and cost and latency over time (`cost --plot`).

Times on the command line: epoch seconds, ISO 8601 (`2026-11-29T01:00:00`, UTC unless it
names a zone) or an age (`90s`, `15m`, `2h`, `1d`: that long before now). Costs are in the
hardware catalogue's price units (lifetime x price per hour).
"""

from __future__ import annotations

import json
import math
import re
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.message import Message
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table

from smiless.cli.app import GatewayOpt, JsonOpt, app, call, console, fail, gateway, print_json, secs, to_dict
from smiless.protoutil import set_seconds
from smiless.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

WatchOpt = Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")]
EveryOpt = Annotated[float, typer.Option("--every", min=0.2, help="Seconds between refreshes with --watch.")]

SERVING_NAMES = {
    gateway_pb2.SERVING_STATUS_SERVING: "SERVING",
    gateway_pb2.SERVING_STATUS_NOT_SERVING: "NOT_SERVING",
    gateway_pb2.SERVING_STATUS_UNREACHABLE: "UNREACHABLE",
}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d)?\s*$")


def parse_duration(text: str, what: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d`, `500ms` -> seconds (positive)."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        fail(f"{what}: {text!r} is not a positive duration like 90s, 15m, 2h, 1d")
        raise AssertionError
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_time(text: str, what: str, now: float) -> float:
    """Epoch seconds, ISO 8601 or an age before now -> epoch seconds."""
    try:
        value = float(text)
        if value > 1e8:  # epoch seconds; a small bare number is an age in seconds
            return value
    except ValueError:
        pass
    if _DURATION.match(text):
        return now - parse_duration(text, what)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{what}: {text!r} is neither epoch seconds, ISO 8601 nor an age like 15m")
        raise
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _ms(d: Any) -> str:
    return f"{secs(d) * 1000:.1f}"


def _label(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _counts(m: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(m.items())) or "-"


def _watch(
    fetch: Callable[[], Message], render: Callable[[Any], RenderableType], as_json: bool, every: float
) -> None:
    """Refresh until Ctrl-C: a live table, or one compact JSON line per refresh."""
    # Handled here, like `smiless up` and the services do, because a process started where
    # SIGINT is ignored (a script's background job) inherits that and would never stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if as_json:
            while True:
                sys.stdout.write(json.dumps(_json(fetch())) + "\n")
                sys.stdout.flush()
                time.sleep(every)
        with Live(render(fetch()), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(every)
                live.update(render(fetch()), refresh=True)
    except KeyboardInterrupt:
        pass


def _json(resp: Message) -> dict[str, Any]:
    doc = to_dict(resp)
    for s in doc.get("services", []):
        s["status"] = s["status"].removeprefix("SERVING_STATUS_")
    return doc


# --- status --------------------------------------------------------------------------------
def render_status(resp: gateway_pb2.GetStatusResponse) -> RenderableType:
    parts: list[RenderableType] = []
    services = Table(title="services" + (" (degraded)" if resp.degraded else ""))
    for col in ("service", "address", "status"):
        services.add_column(col)
    for s in resp.services:
        services.add_row(s.name, s.address, SERVING_NAMES.get(s.status, "?"))
    parts.append(services)
    for reason in resp.degraded_reasons:
        parts.append(f"[yellow]degraded:[/yellow] {reason}")
    apps = Table(title="apps")
    for col in ("app", "sla ms", "plan", "instances", "by config"):
        apps.add_column(col)
    win = Table(title="invocations per window (ending now)")
    for col in ("app", "window", "invocations", "rate /s", "p50 ms", "p99 ms", "SLA violations", "cold"):
        win.add_column(col, justify="right" if col not in ("app", "window") else "left")
    plans = Table(title="plans")
    for col in ("app", "function", "config", "mode", "batch", "instances", "keep-alive s"):
        plans.add_column(col)
    for a in resp.apps:
        plan = "-"
        if a.HasField("plan"):
            p = a.plan
            plan = (
                f"{'feasible' if p.feasible else 'INFEASIBLE'}, {secs(p.predicted_latency) * 1000:.0f} ms, "
                f"{p.predicted_cost:.3g}/inv"
            )
            for f in p.functions:
                plans.add_row(
                    a.name,
                    f.function,
                    f.config,
                    _mode(f.mode),
                    str(f.batch_size),
                    str(f.instances),
                    f"{secs(f.keep_alive):g}",
                )
        apps.add_row(
            a.name,
            f"{secs(a.sla) * 1000:g}",
            plan,
            _counts(a.instances_by_state),
            _counts(a.instances_by_config),
        )
        for w in a.windows:
            win.add_row(
                a.name,
                _label(secs(w.window)),
                f"{w.invocations}{' (latest)' if w.sampled else ''}",
                f"{w.rate:.2f}",
                _ms(w.p50_latency),
                _ms(w.p99_latency),
                f"{w.sla_violations} ({w.sla_violation_ratio:.1%})",
                str(w.cold_invocations),
            )
    parts += [apps, win]
    if plans.row_count:
        parts.append(plans)
    if resp.records_dropped or resp.records_buffered:
        parts.append(f"records: {resp.records_buffered} buffered, {resp.records_dropped} dropped")
    return Group(*parts)


def _mode(mode: int) -> str:
    return str(common_pb2.ColdStartMode.Name(mode)).removeprefix("COLD_START_MODE_").lower()  # type: ignore[arg-type]


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="Only this app.")] = None,
    window: Annotated[
        list[str] | None,
        typer.Option("--window", help="Window ending now (repeatable), e.g. 1m; default 1m 5m 1h."),
    ] = None,
    gw: GatewayOpt = None,
    as_json: JsonOpt = False,
    watch: WatchOpt = False,
    every: EveryOpt = 2.0,
) -> None:
    """Services' health and, per app: plan, instances by state, rate, p50/p99, SLA violations."""
    request = gateway_pb2.GetStatusRequest(app=name or "")
    for w in window or []:
        set_seconds(request.windows.add(), parse_duration(w, "--window"))
    with gateway(gw) as channel_stub:
        fetch = _fetcher(channel_stub, "GetStatus", request)
        if watch:
            _watch(fetch, render_status, as_json, every)
            return
        resp = fetch()
    if as_json:
        print_json(_json(resp))
        return
    console.print(render_status(resp))


def _fetcher(stub: gateway_pb2_grpc.GatewayStub, method: str, request: Message) -> Callable[[], Any]:
    def fetch() -> Any:
        return call(getattr(stub, method), request)

    return fetch


# --- cost ----------------------------------------------------------------------------------
def render_cost(resp: gateway_pb2.GetCostReportResponse) -> RenderableType:
    start, end = secs(resp.start), secs(resp.end)
    span = f"{_when(start)} .. {_when(end)} ({_label(round(end - start))})"
    apps = Table(title=f"cost by app, {span}", caption=f"total {resp.total_cost:.6f}")
    for col in ("app", "cost", "invocations", "cost / 1000", "SLA violations", "cold invocations"):
        apps.add_column(col, justify="left" if col == "app" else "right")
    fns = Table(title="cost by function")
    for col in ("app", "function", "instance seconds by config", "cost", "cost / 1000", "cold starts"):
        fns.add_column(
            col, justify="left" if col in ("app", "function", "instance seconds by config") else "right"
        )
    for a in resp.apps:
        apps.add_row(
            a.app + (" (deleted)" if a.deleted else ""),
            f"{a.cost:.6f}",
            str(a.invocations),
            f"{a.cost_per_1000:.6f}",
            f"{a.sla_violations} ({a.sla_violation_ratio:.1%})",
            str(a.cold_invocations),
        )
        for f in a.functions:
            by_config = ", ".join(f"{k} {v:.1f}" for k, v in sorted(f.instance_seconds.items())) or "-"
            fns.add_row(
                a.app, f.function, by_config, f"{f.cost:.6f}", f"{f.cost_per_1000:.6f}", str(f.cold_starts)
            )
    return Group(apps, fns)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def plot_cost(resp: gateway_pb2.GetCostReportResponse, path: Path) -> None:
    """Cumulative cost (top) and p50/p99 latency per bucket (bottom, at bucket midpoints) of
    each app over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cost, ax_lat) = plt.subplots(2, 1, sharex=True, figsize=(9, 6.5))
    t0 = secs(resp.start)
    span = secs(resp.end) - t0
    unit, size = ("seconds", 1.0) if span < 120 else ("minutes", 60.0) if span < 7200 else ("hours", 3600.0)
    for a in resp.apps:
        if not a.series:
            continue
        starts = [(secs(p.start) - t0) / size for p in a.series]
        ends = [*starts[1:], span / size]
        mids = [(x0 + x1) / 2 for x0, x1 in zip(starts, ends, strict=True)]
        total, cumulative = 0.0, [0.0]
        for p in a.series:
            total += p.cost
            cumulative.append(total)
        # cost accrued by the end of each bucket, from 0 at the range's start
        (line,) = ax_cost.plot([starts[0], *ends], cumulative, label=a.app)
        p50 = [secs(p.p50_latency) * 1000 if p.invocations else math.nan for p in a.series]
        p99 = [secs(p.p99_latency) * 1000 if p.invocations else math.nan for p in a.series]
        ax_lat.plot(mids, p50, marker=".", color=line.get_color(), label=f"{a.app} p50")
        ax_lat.plot(mids, p99, marker=".", linestyle="--", color=line.get_color(), label=f"{a.app} p99")
    ax_cost.set_ylabel("cumulative cost (price units)")
    ax_cost.set_title(f"cost and latency from {_when(t0)} UTC (total {resp.total_cost:.6f})")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel(f"{unit} since start")
    for ax in (ax_cost, ax_lat):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@app.command()
def cost(
    name: Annotated[str | None, typer.Argument(help="Only this app.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", "--start", help="Range start (default: first record).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", "--end", help="Range end (default: now).")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Bucket of the time series, e.g. 1m.")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of cost and latency over time.")
    ] = None,
    gw: GatewayOpt = None,
    as_json: JsonOpt = False,
    watch: WatchOpt = False,
    every: EveryOpt = 2.0,
) -> None:
    """Cost per app and function over a time range, from the recorded instance lifetimes.

    Instance seconds by config, cost, cost per 1,000 invocations, cold starts, SLA violations.
    """
    now = time.time()
    start = parse_time(since, "--since", now) if since else None
    end = parse_time(until, "--until", now) if until else None
    if start is not None and end is not None and end < start:
        fail("--until: before --since")
    request = gateway_pb2.GetCostReportRequest(app=name or "")
    if start is not None:
        set_seconds(request.start, start)
    if end is not None:
        set_seconds(request.end, end)
    if step:
        set_seconds(request.step, parse_duration(step, "--step"))
    with gateway(gw) as stub:
        fetch = _fetcher(stub, "GetCostReport", request)
        if watch:
            _watch(fetch, render_cost, as_json, every)
            return
        resp = fetch()
    if plot is not None:
        try:
            plot_cost(resp, plot)
        except OSError as exc:
            fail(f"--plot: cannot write {plot}: {exc.strerror}")
    if as_json:
        print_json(_json(resp))
        return
    console.print(render_cost(resp))
    if plot is not None:
        console.print(f"wrote {plot}")
