"""A replay session against a running stack: connect to the gateway, register the apps
given as spec files, pair apps with trace rows, replay them open loop and collect the
gateway's report for the window. `ReplayError` is a user-facing problem (one line)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import grpc

from smiless import appspec
from smiless.config import Settings
from smiless.replay.driver import GatewayInvoker, cost_report, example_requests, run_schedule, window_status
from smiless.replay.report import (
    LATE_THRESHOLD_S,
    Outcome,
    Replayed,
    after_lead_in,
    make_report,
    report_window_end,
)
from smiless.replay.schedule import Send, build_schedule, make_workload, select_row, window_seconds
from smiless.sim.workload import Workload
from smiless.trace import Spread, TraceError, TraceFunction, load_trace
from smiless.v1 import gateway_pb2, gateway_pb2_grpc


class Watch(Protocol):
    """What a replay tells its onlooker (the CLI's progress bar and warnings)."""

    def running(self, apps: Sequence[str], schedule: Sequence[Send]) -> AbstractContextManager[object]:
        """Entered while the schedule is being sent."""
        ...

    def sent(self, s: Send) -> None: ...

    def done(self, o: Outcome) -> None: ...

    def warn(self, message: str) -> None:
        """Something the report cannot show (a degraded stack, no gateway report)."""
        ...


class ReplayError(Exception):
    """A user-facing problem (unreachable gateway, unknown app): one line, exit 1."""


def is_spec_file(value: str) -> bool:
    return value.endswith((".yaml", ".yml", ".json")) and Path(value).is_file()


def build_workloads(
    apps: Sequence[str], trace_path: Path, rows: Sequence[str], start_minute: int, minutes: int | None
) -> tuple[list[Workload], dict[str, TraceFunction]]:
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
            fn = select_row(trace, row)
        except KeyError as exc:
            raise ReplayError(f"--row: {exc.args[0]}") from exc
        found[name] = fn
        try:
            out.append(make_workload(name, fn, start_minute, minutes))
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
    workloads: Sequence[Workload],
    *,
    slot_seconds: float,
    spread: Spread,
    seed: int = 0,
    timeout_s: float = 60.0,
    late_threshold_s: float = LATE_THRESHOLD_S,
    lead_in_minutes: int = 0,
    watch: Watch | None = None,
) -> Replayed:
    """Replay the workloads (apps already registered) and collect the gateway's report.

    The first `lead_in_minutes` of each workload are sent but not measured: the report, the
    outcomes and the cost window cover the minutes after them (see `after_lead_in`). `watch`
    hears of every send and answer and of what goes wrong without stopping the replay."""
    warn = watch.warn if watch is not None else (lambda message: None)
    schedule = build_schedule(workloads, slot_seconds, spread, seed)
    apps = [w.app for w in workloads]
    if len(set(apps)) != len(apps):
        raise ReplayError("--app: each app may be replayed once per run")
    if any(w.minutes <= lead_in_minutes for w in workloads):
        raise ReplayError(f"lead-in: {lead_in_minutes} minutes leave nothing to measure")
    async with _channel(address, _message_options()) as channel:
        await _ready(channel, address)
        stub = gateway_pb2_grpc.GatewayStub(channel)
        try:
            requests = await example_requests(stub, apps, seed)
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
            warn(f"the stack is degraded ({', '.join(down) or 'recorder'})")
        invoker = GatewayInvoker(channel, requests, timeout_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        try:
            with watch.running(apps, schedule) if watch is not None else contextlib.nullcontext():
                run = await run_schedule(
                    schedule,
                    invoker,
                    stop=stop,
                    on_sent=watch.sent if watch is not None else None,
                    on_done=watch.done if watch is not None else None,
                )
        finally:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signal.SIGINT)
        run, measured = after_lead_in(run, workloads, lead_in_minutes, slot_seconds)
        end = report_window_end(run, window_seconds(measured, slot_seconds))
        # Let the gateway flush its records, and ask only once the window has ended on the wall
        # clock: asyncio's timers run on the monotonic clock and may wake microseconds early,
        # and the gateway counts a live instance up to min(now, end).
        while (left := end - time.time()) > 0.0:
            await asyncio.sleep(left)
        costs: gateway_pb2.GetCostReportResponse | None = None
        status_now = gateway_pb2.GetStatusResponse()
        try:
            costs = await cost_report(stub, run.started_at, end, slot_seconds)
            for a in apps:
                got = await window_status(stub, a, time.time() - run.started_at)
                status_now.apps.extend(got.apps)
        except grpc.aio.AioRpcError as exc:
            warn(f"no gateway report: {exc.code().name}: {exc.details()}")
    report = make_report(
        run, measured, slot_seconds, spread, end, costs, status_now if costs else None, late_threshold_s
    )
    return Replayed(report, run.outcomes, specs, seed, lead_in_minutes=lead_in_minutes)


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


async def replay_trace(
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
    watch: Watch | None = None,
) -> Replayed:
    """Register the --app values that are spec files, pair the apps with their trace rows and
    replay them (`replay_apps`); the arguments are the `smiless replay` options."""
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
        watch=watch,
    )
    done.rows = found
    return done
