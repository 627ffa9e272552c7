"""`smiless demo`: the main job in one command.

It brings up the embedded stack (or uses one already serving on the configured addresses),
profiles every model of the three reference apps that has no profile yet (resumable, with
progress; the apps are unregistered meanwhile so that no controller warms them while the
profiler measures), registers the apps, loads each app's arrival history from the trace (the
two trace hours before the lead-in, compressed, ending now) so the predictor and the
controller start from the trace's rhythm, replays a lead-in (the 90 trace minutes before
the window, 180 s: 13 instances come up two cold starts at a time, 10-30 s each while
the other apps are served) and then,
without a pause, a fixed window of the Azure sample against the three apps at once, and
ends with the report of the window alone and a PNG of cost and latency over time.

Why a lead-in and not a wait: the reference's load generator slept 15 s before its window;
here cold starts take longer, and in a silent wait the controller rightly sees the apps go
idle and stops what it warmed. The lead-in is traffic, so the window starts in the steady
state a long-running deployment is in; `--compare-sim` simulates the same lead-in.

The fixed window and its rows: `smiless.replay.demo`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from smiless import appspec, replay, security
from smiless.cli import replay as replay_cli
from smiless.cli.app import JsonOpt, app, console, err, fail, print_json
from smiless.config import SERVICE_NAMES, Settings
from smiless.replay.demo import (
    DEMO_LEAD_IN,
    DEMO_MINUTES,
    DEMO_ROWS,
    DEMO_START_MINUTE,
    demo_env,
    gateway_serving,
    load_history,
    models_of,
    wait_ready,
)
from smiless.trace import DEFAULT_TRACE, TraceError, load_trace
from smiless.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    profiler_pb2,
    profiler_pb2_grpc,
)


def profile_missing(
    address: str,
    models: list[str],
    configs: list[str],
    cold_starts: int,
    batch_sizes: list[int],
    out: Console,
    show_progress: bool,
    before: Callable[[], None] | None = None,
) -> dict[str, str]:
    """Profile each model without a stored profile (after calling `before`, when there is
    one to profile); return model -> what happened.

    A fit whose held-out MAPE is over the threshold is stored anyway (force) and said so:
    the demo's plans need a profile, and the note keeps it honest."""
    done: dict[str, str] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with grpc.insecure_channel(address) as ch:
        stub = profiler_pb2_grpc.ProfilerStub(ch)
        missing = []
        for m in models:
            try:
                got = stub.GetProfile(profiler_pb2.GetProfileRequest(model=m), timeout=10)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                got = profiler_pb2.GetProfileResponse()
            if got.profiles:
                done[m] = "stored earlier"
            else:
                missing.append(m)
        if not missing:
            return done
        if before is not None:
            before()
        out.print(f"profiling {len(missing)} model(s) without a profile: {', '.join(missing)}")
        with Progress(*columns, console=out, transient=True, disable=not show_progress) as bar:
            overall = bar.add_task("models", total=len(missing))
            for m in missing:
                step = bar.add_task(m, total=None)
                force = False
                deadline = time.monotonic() + 120.0
                while True:
                    req = profiler_pb2.ProfileFunctionRequest(
                        model=m,
                        configs=configs,
                        cold_starts=cold_starts,
                        batch_sizes=batch_sizes,
                        force=force,
                    )
                    try:
                        for msg in stub.ProfileFunction(req, timeout=3600):
                            bar.update(
                                step, completed=msg.done, total=msg.total, description=f"{m}: {msg.step}"
                            )
                            if msg.profiles:
                                mape = max(p.inference.mape for p in msg.profiles)
                                done[m] = (
                                    f"profiled (MAPE {mape:.1%}{', stored with force' if force else ''})"
                                )
                        break
                    except grpc.RpcError as exc:
                        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and not force:
                            out.print(f"[yellow]note:[/yellow] {m}: {exc.details()}; storing it with force")
                            force = True  # the refused run may still hold its lock: wait for it afresh
                            deadline = time.monotonic() + 120.0
                        elif exc.code() == grpc.StatusCode.ABORTED and time.monotonic() < deadline:
                            time.sleep(1.0)  # the previous run of this model is still winding down
                        else:
                            done[m] = f"not profiled: {exc.code().name}: {exc.details()}"
                            break
                bar.remove_task(step)
                bar.advance(overall)
                out.print(f"{m}: {done.get(m, 'not profiled')}")
    return done


@app.command()
def demo(
    minutes: Annotated[int, typer.Option(help="Trace minutes to replay (the fixed window has 10).")] = 10,
    slot_seconds: Annotated[float, typer.Option(help="Wall seconds per trace minute.")] = 2.0,
    spread: Annotated[str, typer.Option(help="together | poisson (within each trace minute).")] = "together",
    history_minutes: Annotated[
        int, typer.Option(help="Trace minutes before the lead-in loaded as history.")
    ] = 120,
    lead_in_minutes: Annotated[
        int, typer.Option(help="Trace minutes replayed before the window and not measured.")
    ] = DEMO_LEAD_IN,
    warmup: Annotated[
        float,
        typer.Option(help="Longest wait after loading the history for instances to be ready (s); 0: none."),
    ] = 0.0,
    trace: Annotated[
        Path | None, typer.Option(help="Azure invocations CSV (default: the shipped Azure sample).")
    ] = None,
    plot: Annotated[Path, typer.Option(help="PNG of cost and latency over time.")] = Path("smiless-demo.png"),
    profile_configs: Annotated[
        str, typer.Option(help="Configs to profile missing models on.")
    ] = "cpu-1,cpu-2",
    cold_starts: Annotated[int, typer.Option(help="Cold starts per config when profiling.")] = 2,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes when profiling.")] = "1,2,4",
    skip_profiling: Annotated[bool, typer.Option(help="Replay without profiling missing models.")] = False,
    compare_sim: Annotated[bool, typer.Option("--compare-sim", help="Also simulate the window.")] = False,
    data_dir: Annotated[Path, typer.Option(help="Redis data and service logs.")] = Path(".smiless"),
    as_json: JsonOpt = False,
) -> None:
    """Stack up, three reference apps, profiles, a 10-minute Azure window at SLA 4 s, the report."""
    if not 1 <= minutes <= DEMO_MINUTES:
        fail(f"--minutes: {minutes} is outside 1..{DEMO_MINUTES} (the demo's fixed window)")
    if spread not in ("together", "poisson"):
        fail(f"--spread: {spread!r} is not together or poisson")
    if not slot_seconds > 0:
        fail(f"--slot-seconds: {slot_seconds} is not positive")
    if not 0 <= lead_in_minutes <= DEMO_START_MINUTE:
        fail(f"--lead-in-minutes: {lead_in_minutes} is outside 0..{DEMO_START_MINUTE}")
    try:
        batches = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        fail(f"--batch-sizes: {batch_sizes!r} is not a comma-separated list of integers")
        raise
    out = err if as_json else console
    trace_path = trace or DEFAULT_TRACE
    try:
        loaded = load_trace(trace_path)
        rows = {name: replay.select_row(loaded, h) for name, h in DEMO_ROWS.items()}
    except (TraceError, OSError) as exc:
        fail(f"--trace: {exc}")
        raise
    except KeyError as exc:
        fail(f"--trace: {trace_path} is not the Azure sample the demo's window is defined on: {exc.args[0]}")
        raise
    live = DEMO_START_MINUTE - lead_in_minutes
    workloads = [replay.make_workload(n, fn, live, minutes + lead_in_minutes) for n, fn in rows.items()]

    settings = Settings()
    specs = [appspec.load_file(p) for p in appspec.example_paths()]
    stack = None
    if gateway_serving(settings.gateway_addr):
        out.print(f"using the smiless already serving at {settings.gateway_addr}")
        addresses: dict[str, str] = {n: settings.service_addr(n) for n in SERVICE_NAMES}
    else:
        from smiless.stack import LocalStack, StackError

        stack = LocalStack(
            data_dir.resolve(),
            redis_url=os.environ.get("SMILESS_REDIS_URL"),
            ports={n: settings.service_port(n) for n in SERVICE_NAMES},
            extra_env=demo_env(settings, specs),
        )
        with out.status("starting redis and the services..."):
            try:
                stack.start()
            except StackError as exc:
                fail(str(exc))
        addresses = stack.addresses
        limit = stack.extra_env.get("SMILESS_MAX_INSTANCES")
        out.print(
            f"stack up (data and logs in {data_dir})" + (f"; at most {limit} instances" if limit else "")
        )
    try:
        with security.gateway_channel(settings, addresses["gateway"]) as ch:
            gw = gateway_pb2_grpc.GatewayStub(ch)

            def unregister() -> None:
                """Profiles are measured on a quiet host: no controller warming these apps."""
                for spec in specs:
                    try:
                        gw.DeleteApp(gateway_pb2.DeleteAppRequest(name=spec.name), timeout=10)
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.NOT_FOUND:
                            raise

            profiled: dict[str, str] = {}
            if not skip_profiling:
                profiled = profile_missing(
                    addresses["profiler"],
                    models_of(specs),
                    [c for c in profile_configs.split(",") if c],
                    cold_starts,
                    batches,
                    out,
                    not as_json,
                    before=unregister,
                )
            for spec in specs:
                gw.RegisterApp(
                    gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10
                )
        out.print(f"registered {', '.join(f'{s.name} (SLA {s.sla_s:g} s)' for s in specs)}")
        history = load_history(addresses["predictor"], rows, slot_seconds, live, history_minutes)
        out.print(
            "history loaded: "
            + ", ".join(f"{n} {k} arrivals" for n, k in history.items())
            + f" ({history_minutes} trace minutes before minute {live})"
        )
        if warmup > 0:
            with out.status(f"warm-up: up to {warmup:g} s until every function has a ready instance"):
                ready = wait_ready(settings, addresses["gateway"], specs, warmup)
            out.print(f"warm-up: {ready}")
        last = DEMO_START_MINUTE + minutes - 1
        out.print(
            f"replaying trace minutes {live}..{last} against {len(workloads)} apps: a lead-in of "
            f"{lead_in_minutes * slot_seconds:g} s (not measured), then the window "
            f"{DEMO_START_MINUTE}..{last} ({minutes * slot_seconds:g} s)"
        )
        done = asyncio.run(
            replay.replay_apps(
                addresses["gateway"],
                workloads,
                slot_seconds=slot_seconds,
                spread=spread,  # type: ignore[arg-type]
                lead_in_minutes=lead_in_minutes,
                watch=replay_cli.ProgressWatch(not as_json),
            )
        )
        done.rows = rows
        sim_doc = (
            replay.compare_with_sim(done, addresses["profiler"], history_minutes) if compare_sim else None
        )
    except replay.ReplayError as exc:
        fail(str(exc))
        raise
    except grpc.RpcError as exc:
        fail(f"{exc.code().name}: {exc.details()}")
        raise
    finally:
        if stack is not None:
            with out.status("stopping the stack..."):
                stack.stop()
    replay.plot_timeline(done.report, done.outcomes, done.sla_s, plot)
    if as_json:
        doc = done.report.to_dict()
        doc.update(
            profiles=profiled, history_arrivals=history, lead_in_minutes=lead_in_minutes, plot=str(plot)
        )
        if sim_doc is not None:
            doc["simulator"] = sim_doc
        print_json(doc)
        return
    replay_cli.render(done.report)
    if sim_doc is not None:
        replay_cli.render_comparison(sim_doc)
    console.print(f"plot written to {plot}")
