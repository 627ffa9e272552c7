"""`smiless serve`, `up`, `health`, `apps ...`, `invoke`: run the services, manage apps,
invoke them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from smiless import appspec, tensors, zoo
from smiless.cli.app import (
    GatewayOpt,
    JsonOpt,
    app,
    call,
    console,
    err,
    fail,
    gateway,
    print_json,
    secs,
    to_dict,
)
from smiless.config import SERVICE_NAMES, Settings
from smiless.v1 import gateway_pb2

apps_app = typer.Typer(help="Register, list, show and delete apps.", no_args_is_help=True)
app.add_typer(apps_app, name="apps")


# --- serve / up ------------------------------------------------------------------------------
@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="gateway | profiler | predictor | optimizer")],
    host: Annotated[str | None, typer.Option(help="Bind address [SMILESS_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the service's address setting).")] = None,
    redis_url: Annotated[str | None, typer.Option(help="[SMILESS_REDIS_URL]")] = None,
    log_level: Annotated[str | None, typer.Option(help="[SMILESS_LOG_LEVEL]")] = None,
) -> None:
    """Run one service (config from flags and SMILESS_* variables)."""
    if name not in SERVICE_NAMES:
        fail(f"unknown service {name!r}; choose one of {', '.join(SERVICE_NAMES)}")
    from pydantic import ValidationError

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "redis_url": redis_url, "log_level": log_level}.items() if v
    }
    try:
        settings = Settings(**overrides)
        if port is not None:
            settings = settings.model_copy(update={f"{name}_addr": f"{settings.host}:{port}"})
    except ValidationError as exc:
        fail(f"invalid configuration: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        raise
    from smiless import logs
    from smiless.server import serve as run_service
    from smiless.services import build
    from smiless.store import Store

    logs.setup(settings.log_level, settings.log_format)
    store = Store(settings.redis_url, settings.redis_timeout_s)
    asyncio.run(run_service(build(name, settings, store), settings, store))


@app.command()
def up(
    examples: Annotated[bool, typer.Option("--examples", help="Register the three example apps.")] = False,
    data_dir: Annotated[Path, typer.Option(help="Redis data and service logs.")] = Path(".smiless"),
) -> None:
    """Start Redis and the four services on loopback; Ctrl-C stops everything."""
    from smiless.stack import LocalStack, StackError

    stack = LocalStack(
        data_dir.resolve(),
        redis_url=os.environ.get("SMILESS_REDIS_URL"),
        ports={n: Settings().service_port(n) for n in SERVICE_NAMES},
    )
    with console.status("starting redis and the services..."):
        try:
            stack.start()
        except StackError as exc:
            fail(str(exc))
    table = Table(title="smiless is up")
    offset = Settings().metrics_port_offset
    for col in ("service", "address", "/metrics", "log"):
        table.add_column(col)
    table.add_row("redis", str(stack.redis_url), "", str(data_dir / "redis"))
    for name, addr in stack.addresses.items():
        port = (stack.metrics_ports or {}).get(name) or (stack.ports[name] + offset if offset else 0)
        metrics = f"127.0.0.1:{port}" if port else "off"
        table.add_row(name, addr, metrics, str(stack.log_path(name)))
    console.print(table)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if examples:
            with gateway(stack.addresses["gateway"]) as stub:
                for path in appspec.example_paths():
                    spec = appspec.load_file(path)
                    call(
                        stub.RegisterApp,
                        gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True),
                    )
                    console.print(f"registered [bold]{spec.name}[/bold]: smiless invoke {spec.name}")
        console.print("Ctrl-C to stop.")
        while not stopping:
            for name, proc in stack.procs.items():
                if proc.poll() is not None:
                    err.print(f"[red]{name} exited with code {proc.returncode}[/red]; stopping")
                    stopping = True
            time.sleep(0.2)
    finally:
        with console.status("stopping..."):
            stack.stop()
        console.print("stopped.")


@app.command()
def health(
    address: Annotated[str, typer.Argument(help="host:port of any smiless service or worker.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 2.0,
    tls: Annotated[
        bool, typer.Option("--tls", help="Over TLS (a gateway with SMILESS_TLS_CERT; roots: SMILESS_TLS_CA).")
    ] = False,
) -> None:
    """Exit 0 when the standard gRPC health check says SERVING (for container health checks)."""
    from smiless import security
    from smiless.stack import health_status

    try:
        creds = security.channel_credentials(Settings()) if tls else None
    except security.SecurityConfigError as exc:
        fail(str(exc))
        raise
    if tls and creds is None:
        fail(
            "--tls: set SMILESS_TLS_CA (or SMILESS_TLS_CERT) to the roots that sign the gateway's certificate"
        )
    state = health_status(address, timeout, creds)
    console.print(f"{address}: {state}")
    if state != "SERVING":
        raise typer.Exit(1)


# --- apps ------------------------------------------------------------------------------------
@apps_app.command("register")
def apps_register(
    file: Annotated[Path, typer.Argument(help="App spec (YAML or JSON).")],
    replace: Annotated[bool, typer.Option(help="Replace an app of the same name.")] = False,
    gw: GatewayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an app from a spec file."""
    try:
        spec = appspec.load_file(file)
    except appspec.AppSpecError as exc:
        fail(f"{file}: {exc}")
        raise
    with gateway(gw) as stub:
        resp = call(
            stub.RegisterApp, gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=replace)
        )
    if as_json:
        print_json(to_dict(resp))
        return
    console.print(
        f"registered [bold]{spec.name}[/bold] (version {resp.app.version}, {len(spec.functions)} functions)"
    )
    for w in resp.warnings:
        console.print(f"[yellow]note:[/yellow] {w}")


@apps_app.command("list")
def apps_list(gw: GatewayOpt = None, as_json: JsonOpt = False) -> None:
    """List registered apps."""
    with gateway(gw) as stub:
        resp = call(stub.ListApps, gateway_pb2.ListAppsRequest())
    if as_json:
        print_json(to_dict(resp).get("apps", []))
        return
    table = Table()
    for col in ("app", "sla (s)", "functions", "entry", "version"):
        table.add_column(col)
    for a in resp.apps:
        spec = appspec.from_proto(a.spec)
        table.add_row(spec.name, f"{spec.sla_s:g}", str(len(spec.functions)), spec.entry, str(a.version))
    console.print(table)


@apps_app.command("show")
def apps_show(name: str, gw: GatewayOpt = None, as_json: JsonOpt = False) -> None:
    """Show one app's DAG."""
    with gateway(gw) as stub:
        resp = call(stub.GetApp, gateway_pb2.GetAppRequest(name=name))
    if as_json:
        print_json(to_dict(resp.app))
        return
    spec = appspec.from_proto(resp.app.spec)
    console.print(f"[bold]{spec.name}[/bold]  sla {spec.sla_s:g} s  version {resp.app.version}")
    if spec.description:
        console.print(spec.description)
    table = Table()
    for col in ("function", "model", "input", "output", "feeds"):
        table.add_column(col)
    for f in spec.functions:
        m = zoo.MODELS.get(f.model)
        table.add_row(
            f.name,
            f.model,
            m.input.describe() if m else "?",
            m.output.describe() if m else "?",
            ", ".join(spec.children(f.name)),
        )
    console.print(table)


@apps_app.command("delete")
def apps_delete(name: str, gw: GatewayOpt = None) -> None:
    """Delete an app."""
    with gateway(gw) as stub:
        call(stub.DeleteApp, gateway_pb2.DeleteAppRequest(name=name))
    console.print(f"deleted {name}")


# --- invoke / status -------------------------------------------------------------------------
@app.command()
def invoke(
    name: Annotated[str, typer.Argument(help="App name.")],
    input_file: Annotated[
        Path | None, typer.Option("--input", help=".npy file; default: an example input.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the example input.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120.0,
    gw: GatewayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Invoke an app once and show its outputs and per-stage timings."""
    with gateway(gw) as stub:
        if input_file is not None:
            try:
                x = np.load(input_file, allow_pickle=False)
            except (OSError, ValueError) as exc:
                fail(f"--input: cannot read {input_file}: {exc}")
                raise
        else:
            got = call(stub.GetApp, gateway_pb2.GetAppRequest(name=name))
            spec = appspec.from_proto(got.app.spec)
            x = zoo.MODELS[spec.model_of(spec.entry)].example_input(seed)
        try:
            tensor = tensors.to_proto(x)
        except tensors.TensorError as exc:
            fail(f"--input: {exc}")
            raise
        resp = call(stub.Invoke, gateway_pb2.InvokeRequest(app=name, input=tensor), timeout=timeout)
    outputs = {k: tensors.from_proto(v) for k, v in resp.outputs.items()}
    if as_json:
        doc = to_dict(resp)
        doc["outputs"] = {
            k: {"dtype": v.dtype.name, "shape": list(v.shape), "head": v.ravel()[:8].tolist()}
            for k, v in outputs.items()
        }
        print_json(doc)
        return
    table = Table(
        title=f"{name}: {secs(resp.latency) * 1000:.1f} ms, "
        f"{'SLA met' if resp.sla_met else 'SLA missed'}{', cold' if resp.cold else ''}"
    )
    for col in ("stage", "config", "start ms", "latency ms", "queueing ms", "inference ms", "cold"):
        table.add_column(col)
    for st in resp.stages:
        table.add_row(
            st.function,
            st.config,
            f"{secs(st.start_offset) * 1000:.1f}",
            f"{secs(st.latency) * 1000:.1f}",
            f"{secs(st.queueing) * 1000:.1f}",
            f"{secs(st.inference) * 1000:.1f}",
            "yes" if st.cold else "",
        )
    console.print(table)
    for k, v in outputs.items():
        console.print(f"output [bold]{k}[/bold]: {v.dtype}{list(v.shape)}")
