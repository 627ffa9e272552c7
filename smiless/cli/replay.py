"""`smiless replay`: drive apps with Azure trace rows against the running stack, open loop,
and print the gateway's report for the replay window beside the client's view."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from smiless import replay
from smiless.cli.app import JsonOpt, app, console, err, fail, print_json
from smiless.config import Settings
from smiless.trace import DEFAULT_TRACE


class ProgressWatch:
    """The replay's progress on stderr: one bar per app, its OK and failed answers."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.counts: dict[str, dict[str, int]] = {}
        self.tasks: dict[str, TaskID] = {}
        self.bar: Progress | None = None

    @contextlib.contextmanager
    def running(self, apps: Sequence[str], schedule: Sequence[replay.Send]) -> Iterator[None]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True, disable=not self.show) as bar:
            self.bar = bar
            self.counts = {a: {"ok": 0, "failed": 0} for a in apps}
            self.tasks = {a: bar.add_task(f"{a}", total=sum(1 for s in schedule if s.app == a)) for a in apps}
            yield

    def sent(self, s: replay.Send) -> None:
        if self.bar is not None:
            self.bar.advance(self.tasks[s.app])

    def done(self, o: replay.Outcome) -> None:
        c = self.counts[o.send.app]
        c["ok" if o.status == replay.OK else "failed"] += 1
        if self.bar is not None:
            self.bar.update(
                self.tasks[o.send.app], description=f"{o.send.app}: {c['ok']} ok, {c['failed']} failed"
            )

    def warn(self, message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {message}")


def _ms(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}"


def render(report: replay.ReplayReport) -> None:
    """The report for the replay window: the gateway's figures, then the client's view."""
    title = (
        f"replay {report.window_s:.1f} s ({report.slot_seconds:g} s per trace minute, {report.spread})"
        + (" (interrupted)" if report.interrupted else "")
    )
    t = Table(title=title)
    cols = ("app", "calls", "SLA viol.", "cost", "per 1000", "p50 ms", "p99 ms", "cold", "started")
    for col in cols:
        t.add_column(col, justify="left" if col == "app" else "right", no_wrap=col == "app")
    for a in report.apps:
        g, c = a.gateway, a.client
        t.add_row(
            a.app,
            str(g.invocations) if g else "?",
            f"{g.violation_ratio:.1%}" if g else "?",
            f"{g.cost:.3g}" if g else "?",
            f"{g.cost_per_1000:.3g}" if g else "?",
            _ms(g.p50_ms if g else None),
            _ms(g.p99_ms if g else None),
            str(g.cold_invocations) if g else "?",
            str(g.instances_started) if g else "?",
        )
    console.print(t)
    ct = Table(title="client view (trace row, first minute + minutes; late: sends over the threshold)")
    for col in ("app", "row", "window", "scheduled", "sent", "ok", "failed", "not sent", "late", "late p99"):
        ct.add_column(col, no_wrap=col == "app")
    for a in report.apps:
        c = a.client
        ct.add_row(
            a.app,
            a.row[:8],
            f"{a.start_minute}+{a.minutes}",
            str(c.scheduled),
            str(c.sent),
            str(c.ok),
            ", ".join(f"{k} {v}" for k, v in c.failed.items()) or "0",
            str(c.not_sent),
            f"{c.lateness.late}",
            f"{c.lateness.p99_s * 1000:.0f} ms",
        )
    console.print(ct)
    console.print(
        "From the gateway: cost, violations, cold invocations and instances started over the window "
        "(GetCostReport); p50/p99 over a window ending at the report (GetStatus)."
    )
    if report.slipped:
        worst = max(a.client.lateness.max_s for a in report.apps)
        threshold = report.apps[0].client.lateness.threshold_s
        console.print(
            f"[red]the replay slipped:[/red] more than {replay.SLIP_FRACTION:.0%} of an app's sends "
            f"went out over {threshold * 1000:.0f} ms late (worst {worst * 1000:.0f} ms); "
            "the load was not the trace's"
        )
    if not report.accounted:
        console.print("[red]some scheduled invocations are not accounted for[/red]")
    for a in report.apps:
        if a.gateway is not None and a.gateway.invocations != a.client.sent:
            console.print(
                f"[yellow]note:[/yellow] {a.app}: the gateway recorded {a.gateway.invocations} invocations, "
                f"the client sent {a.client.sent} (calls rejected before execution are not recorded)"
            )


@app.command("replay")
def replay_cmd(
    apps: Annotated[list[str], typer.Option("--app", help="App name or spec file (repeatable).")],
    rows: Annotated[
        list[str], typer.Option("--row", help="HashFunction or 0-based index; one per --app, or one for all.")
    ],
    trace: Annotated[
        Path, typer.Option(help="Azure Functions invocations CSV or .csv.gz (default: the shipped sample).")
    ] = DEFAULT_TRACE,
    start_minute: Annotated[int, typer.Option(help="0-based first trace minute of the window.")] = 0,
    minutes: Annotated[
        int | None, typer.Option(help="Trace minutes to replay (default: to the end).")
    ] = None,
    slot_seconds: Annotated[float, typer.Option(help="Wall seconds per trace minute.")] = 2.0,
    spread: Annotated[str, typer.Option(help="together | poisson (within each trace minute).")] = "together",
    seed: Annotated[int, typer.Option(help="Seed of the Poisson spread and the inputs.")] = 0,
    timeout: Annotated[float, typer.Option(help="Deadline of each invocation (s).")] = 60.0,
    late_threshold: Annotated[float, typer.Option(help="A send this late (s) counts as late.")] = 0.1,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of cost and latency over time.")] = None,
    compare_sim: Annotated[
        bool, typer.Option("--compare-sim", help="Also simulate the window and show both reports.")
    ] = False,
    history_minutes: Annotated[
        int, typer.Option(help="--compare-sim: trace minutes before the window the simulated predictor sees.")
    ] = 120,
    gw: Annotated[str | None, typer.Option("--gateway", envvar="SMILESS_GATEWAY_ADDR")] = None,
    profiler: Annotated[
        str | None, typer.Option(envvar="SMILESS_PROFILER_ADDR", help="--compare-sim: profiler address.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay trace rows against apps, open loop; report cost, violations and latency for the window.

    Ctrl-C stops sending, gives the calls in flight 5 s, and prints the partial report.
    """
    if spread not in ("together", "poisson"):
        fail(f"--spread: {spread!r} is not together or poisson")
    if not slot_seconds > 0:
        fail(f"--slot-seconds: {slot_seconds} is not positive")
    address = gw or Settings().gateway_addr
    try:
        done = asyncio.run(
            replay.replay_trace(
                address,
                apps,
                trace,
                rows,
                start_minute,
                minutes,
                slot_seconds,
                spread,  # type: ignore[arg-type]
                seed,
                timeout,
                late_threshold,
                ProgressWatch(not as_json),
            )
        )
    except replay.ReplayError as exc:
        fail(str(exc))
        raise
    sim_doc = (
        replay.compare_with_sim(done, profiler or Settings().profiler_addr, history_minutes)
        if compare_sim
        else None
    )
    if plot is not None:
        replay.plot_timeline(done.report, done.outcomes, done.sla_s, plot)
    if as_json:
        doc = done.report.to_dict()
        if sim_doc is not None:
            doc["simulator"] = sim_doc
        print_json(doc)
        return
    render(done.report)
    if sim_doc is not None:
        render_comparison(sim_doc)
    if plot is not None:
        console.print(f"plot written to {plot}")


def render_comparison(doc: dict[str, Any]) -> None:
    """Measured against simulated, per app and figure, with the differences."""
    if not doc.get("built"):
        console.print(f"[yellow]--compare-sim:[/yellow] {doc['note']}")
        return
    if "error" in doc:
        console.print(f"[red]--compare-sim:[/red] {doc['error']}")
        return
    t = Table(title=f"measured vs simulated ({doc['policy']} policy, {doc['window_s']:.1f} s window)")
    for col in ("app", "figure", "measured", "simulated", "difference"):
        t.add_column(col, no_wrap=col == "app")
    for a in doc["apps"]:
        m, s = a["measured"], a["simulated"]
        rows = [
            ("cost", f"{m['cost']:.3g}", f"{s['cost']:.3g}", f"{a['cost_error']:+.0%}"),
            ("cost / 1000", f"{m['cost_per_1000']:.3g}", f"{s['cost_per_1000']:.3g}", ""),
            (
                "SLA violations",
                f"{m['violation_ratio']:.1%}",
                f"{s['violation_ratio']:.1%}",
                f"{a['violation_error'] * 100:+.1f} pt",
            ),
            ("p50 ms", _ms(m["p50_ms"]), _ms(s["p50_ms"]), ""),
            ("p99 ms", _ms(m["p99_ms"]), _ms(s["p99_ms"]), ""),
            ("instances started", str(m["instances_started"]), str(s["instances_started"]), ""),
            ("invocations", str(m["invocations"]), str(s["invocations"]), ""),
        ]
        for k, (fig, mv, sv, diff) in enumerate(rows):
            t.add_row(a["app"] if k == 0 else "", fig, mv, sv, diff)
        t.add_section()
    console.print(t)
    verdict = "within" if doc["within_target"] else "[red]NOT within[/red]"
    console.print(
        f"fidelity: {verdict} the target (cost ±{replay.COST_TOLERANCE:.0%}, "
        f"violation ratio ±{replay.VIOLATION_TOLERANCE * 100:.0f} points) for every app"
    )
    for n in doc["notes"]:
        console.print(f"[yellow]note:[/yellow] {n}")
