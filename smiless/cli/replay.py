"""`smiless replay`: drive apps with Azure trace rows against the running stack, open loop,
and print the gateway's report for the replay window beside the client's view."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smiless import appspec, replay
from smiless.cli.app import JsonOpt, app, console, err, fail, print_json
from smiless.config import Settings
from smiless.trace import DEFAULT_TRACE, Spread, TraceError, TraceFunction, load_trace
from smiless.v1 import gateway_pb2, gateway_pb2_grpc


class ReplayError(Exception):
    """A user-facing problem (unreachable gateway, unknown app): one line, exit 1."""


def is_spec_file(value: str) -> bool:
    return value.endswith((".yaml", ".yml", ".json")) and Path(value).is_file()


def build_workloads(
    apps: Sequence[str], trace_path: Path, rows: Sequence[str], start_minute: int, minutes: int | None
) -> tuple[list[replay.Workload], dict[str, TraceFunction]]:
    """Pair --app with --row by position (one --row drives every app); raise ReplayError."""
    if len(rows) not in (1, len(apps)):
        raise ReplayError(f"--row: give one row for all apps or one per --app ({len(apps)}), got {len(rows)}")
    try:
        trace = load_trace(trace_path)
    except (TraceError, OSError) as exc:
        raise ReplayError(f"--trace: {exc}") from exc
    out = []
    found: dict[str, TraceFunction] = {}
    for i, name in enumerate(apps):
        row = rows[0] if len(rows) == 1 else rows[i]
        try:
            fn = replay.select_row(trace, row)
        except KeyError as exc:
            raise ReplayError(f"--row: {exc.args[0]}") from exc
        found[name] = fn
        try:
            out.append(replay.make_workload(name, fn, start_minute, minutes))
        except ValueError as exc:
            raise ReplayError("--" + str(exc).replace("_", "-", 1)) from exc
    return out, found


async def _ready(channel: grpc.aio.Channel, address: str) -> None:
    try:
        await asyncio.wait_for(channel.channel_ready(), 5)
    except TimeoutError:
        raise ReplayError(
            f"cannot reach the gateway at {address}: is `smiless up` running? "
            "(--gateway, SMILESS_GATEWAY_ADDR)"
        ) from None


async def register_specs(stub: gateway_pb2_grpc.GatewayStub, apps: Sequence[str]) -> list[str]:
    """Register the --app values that are spec files (replacing); return every app's name."""
    names = []
    for value in apps:
        if not is_spec_file(value):
            names.append(value)
            continue
        try:
            spec = appspec.load_file(value)
        except appspec.AppSpecError as exc:
            raise ReplayError(f"--app: {value}: {exc}") from exc
        await stub.RegisterApp(
            gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10
        )
        names.append(spec.name)
    return names


async def replay_apps(
    address: str,
    workloads: Sequence[replay.Workload],
    *,
    slot_seconds: float,
    spread: Spread,
    seed: int = 0,
    timeout_s: float = 60.0,
    late_threshold_s: float = replay.LATE_THRESHOLD_S,
    show_progress: bool = True,
    lead_in_minutes: int = 0,
) -> replay.Replayed:
    """Replay the workloads (apps already registered) and collect the gateway's report.

    The first `lead_in_minutes` of each workload are sent but not measured: the report, the
    outcomes and the cost window cover the minutes after them (see `replay.after_lead_in`)."""
    schedule = replay.build_schedule(workloads, slot_seconds, spread, seed)
    apps = [w.app for w in workloads]
    if len(set(apps)) != len(apps):
        raise ReplayError("--app: each app may be replayed once per run")
    if any(w.minutes <= lead_in_minutes for w in workloads):
        raise ReplayError(f"lead-in: {lead_in_minutes} minutes leave nothing to measure")
    async with _channel(address, _message_options()) as channel:
        await _ready(channel, address)
        stub = gateway_pb2_grpc.GatewayStub(channel)
        try:
            requests = await replay.example_requests(stub, apps, seed)
            specs = {
                a: appspec.from_proto(
                    (await stub.GetApp(gateway_pb2.GetAppRequest(name=a), timeout=10)).app.spec
                )
                for a in apps
            }
            status = await stub.GetStatus(gateway_pb2.GetStatusRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise ReplayError(f"{exc.code().name}: {exc.details()}") from exc
        if status.degraded:
            down = [s.name for s in status.services if s.status != gateway_pb2.SERVING_STATUS_SERVING]
            err.print(f"[yellow]warning:[/yellow] the stack is degraded ({', '.join(down) or 'recorder'})")
        invoker = replay.GatewayInvoker(channel, requests, timeout_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        counts = {a: {"ok": 0, "failed": 0} for a in apps}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True, disable=not show_progress) as bar:
            tasks = {
                w.app: bar.add_task(f"{w.app}", total=sum(1 for s in schedule if s.app == w.app))
                for w in workloads
            }

            def on_sent(s: replay.Send) -> None:
                bar.advance(tasks[s.app])

            def on_done(o: replay.Outcome) -> None:
                c = counts[o.send.app]
                c["ok" if o.status == replay.OK else "failed"] += 1
                bar.update(tasks[o.send.app], description=f"{o.send.app}: {c['ok']} ok, {c['failed']} failed")

            try:
                run = await replay.run_schedule(
                    schedule, invoker, stop=stop, on_sent=on_sent, on_done=on_done
                )
            finally:
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(signal.SIGINT)
        run, measured = replay.after_lead_in(run, workloads, lead_in_minutes, slot_seconds)
        end = replay.report_window_end(run, replay.window_seconds(measured, slot_seconds))
        # Let the gateway flush its records, and ask only once the window has ended on the wall
        # clock: asyncio's timers run on the monotonic clock and may wake microseconds early,
        # and the gateway counts a live instance up to min(now, end).
        while (left := end - time.time()) > 0.0:
            await asyncio.sleep(left)
        costs: gateway_pb2.GetCostReportResponse | None = None
        status_now = gateway_pb2.GetStatusResponse()
        try:
            costs = await replay.cost_report(stub, run.started_at, end, slot_seconds)
            for a in apps:
                got = await replay.window_status(stub, a, time.time() - run.started_at)
                status_now.apps.extend(got.apps)
        except grpc.aio.AioRpcError as exc:
            err.print(f"[yellow]warning:[/yellow] no gateway report: {exc.code().name}: {exc.details()}")
    report = replay.make_report(
        run, measured, slot_seconds, spread, end, costs, status_now if costs else None, late_threshold_s
    )
    return replay.Replayed(report, run.outcomes, specs, seed, lead_in_minutes=lead_in_minutes)


def _channel(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to the gateway with TLS and the token as configured."""
    from smiless import security

    try:
        return security.gateway_aio_channel(Settings(), address, options)
    except security.SecurityConfigError as exc:
        raise ReplayError(str(exc)) from exc


def _message_options() -> list[tuple[str, Any]]:
    limit = Settings().max_message_mb * 1024 * 1024
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


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
            _replay_cli(
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
                not as_json,
            )
        )
    except ReplayError as exc:
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


async def _replay_cli(
    address: str,
    apps: Sequence[str],
    trace: Path,
    rows: Sequence[str],
    start_minute: int,
    minutes: int | None,
    slot_seconds: float,
    spread: Spread,
    seed: int,
    timeout: float,
    late_threshold: float,
    show_progress: bool,
) -> replay.Replayed:
    async with _channel(address) as channel:
        await _ready(channel, address)
        try:
            names = await register_specs(gateway_pb2_grpc.GatewayStub(channel), apps)
        except grpc.aio.AioRpcError as exc:
            raise ReplayError(f"--app: {exc.code().name}: {exc.details()}") from exc
    workloads, found = build_workloads(names, trace, rows, start_minute, minutes)
    done = await replay_apps(
        address,
        workloads,
        slot_seconds=slot_seconds,
        spread=spread,
        seed=seed,
        timeout_s=timeout,
        late_threshold_s=late_threshold,
        show_progress=show_progress,
    )
    done.rows = found
    return done


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
