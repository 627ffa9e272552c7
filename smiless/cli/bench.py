"""`smiless bench ...`: benchmark commands. Each prints its figures (`--json` for the rows);
none of them is a timed test."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.progress import Progress
from rich.table import Table

from smiless import profiles
from smiless.backends.base import BackendError
from smiless.backends.process import ProcessBackend
from smiless.catalogue import load_catalogue
from smiless.cli.app import JsonOpt, app, console, fail, print_json
from smiless.config import Settings
from smiless.policy.fitting import coverage
from smiless.trace import DEFAULT_TRACE
from smiless.v1 import profiler_pb2, profiler_pb2_grpc

bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def table(rows: list[dict[str, object]], title: str) -> Table:
    t = Table(title=title)
    for col in rows[0] if rows else []:
        t.add_column(col)
    for r in rows:
        t.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    return t


@bench_app.command("init-coverage")
def init_coverage(
    model: Annotated[str, typer.Option(help="A model with a stored profile.")],
    config: Annotated[str, typer.Option(help="Hardware config to cold-start on.")] = "cpu-1",
    starts: Annotated[int, typer.Option(help="Further cold starts to measure.")] = 30,
    k: Annotated[float, typer.Option(help="The planner's bound is μ + kσ.")] = 3.0,
    profiler: Annotated[str | None, typer.Option(envvar="SMILESS_PROFILER_ADDR")] = None,
    as_json: JsonOpt = False,
) -> None:
    """How many further cold starts the stored profile's μ + kσ covers (target ≥ 99 %)."""
    settings = Settings()
    cat = load_catalogue(settings.catalogue)
    if config not in cat:
        fail(f"--config: unknown hardware config {config!r}")
    addr = profiler or settings.profiler_addr
    with grpc.insecure_channel(addr) as ch:
        try:
            got = profiler_pb2_grpc.ProfilerStub(ch).GetProfile(
                profiler_pb2.GetProfileRequest(model=model), timeout=10
            )
        except grpc.RpcError as exc:
            fail(f"profile of {model}: {exc.code().name}: {exc.details()}")
            raise
    found = [p for p in got.profiles if profiles.KIND_FROM_PROTO[p.kind] is cat[config].kind]
    if not found:
        fail(f"{model} has no {cat[config].kind.value} profile")
    init = profiles.from_proto(found[0]).init

    async def measure() -> list[float]:
        backend = ProcessBackend(
            settings.host, settings.worker_start_timeout_s, settings.worker_stop_timeout_s
        )
        totals = []
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"cold starts of {model} on {config}", total=starts)
            try:
                for _ in range(starts):
                    name = f"bench-{uuid.uuid4().hex[:8]}"
                    w = await backend.start(name, model, cat[config])
                    await backend.stop(name)
                    totals.append(w.ready_at - w.spawned_at)
                    bar.advance(task)
            finally:
                await backend.close()
        return totals

    totals = asyncio.run(measure())
    row: dict[str, object] = {
        "model": model,
        "config": config,
        "profile_version": found[0].version,
        "mu_s": init.mean,
        "sigma_s": init.std,
        "bound_s": init.bound(k),
        "starts": len(totals),
        "p50_s": statistics.median(totals),
        "max_s": max(totals),
        "coverage": coverage(init, totals, k),
    }
    if as_json:
        print_json(row)
    else:
        console.print(table([row], f"init-time coverage of μ + {k:g}σ"))


@bench_app.command("optimizer")
def optimizer_bench(
    seed: Annotated[int, typer.Option()] = 0,
    repeats: Annotated[int, typer.Option(help="Timing repeats per case (median).")] = 5,
    top_k: Annotated[int, typer.Option()] = 1,
    max_nodes: Annotated[int, typer.Option(help="Node cap of the exact optimiser.")] = 300_000,
    as_json: JsonOpt = False,
) -> None:
    """Fast path search vs the exact optimiser on seeded random DAGs (M = 2, 8, 16)."""
    from smiless.bench.optimizer import bench_optimizer, summarize

    with console.status("planning seeded random DAGs with both searches..."):
        rows = bench_optimizer(seed, repeats, max_nodes=max_nodes, top_k=top_k)
    if as_json:
        print_json(rows)
        return
    console.print(table(summarize(rows), "optimizer: medians over the SLAs 2-6 s"))


@bench_app.command("autoscaler")
def autoscaler_bench(as_json: JsonOpt = False) -> None:
    """Median auto-scaler decision time for G = 1 … 1,000 concurrent invocations."""
    from smiless.bench.optimizer import bench_autoscaler

    rows = bench_autoscaler()
    if as_json:
        print_json(rows)
        return
    console.print(table(rows, "auto-scaler decision time"))


@bench_app.command("predictor")
def predictor_bench(
    trace: Annotated[
        Path, typer.Option(help="Azure Functions invocations CSV or .csv.gz (default: the shipped sample).")
    ] = DEFAULT_TRACE,
    max_functions: Annotated[int, typer.Option(help="Functions evaluated (evenly spaced by activity).")] = 80,
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy of every predictor on the last 20 % of each selected function's series."""
    from dataclasses import asdict

    from smiless.bench.predictor import BenchConfig, run_benchmark
    from smiless.trace import TraceError

    cfg = BenchConfig(max_functions=max_functions, jobs=max(1, jobs))
    try:
        with console.status(f"fitting and evaluating every predictor on {trace} ..."):
            rows = [asdict(r) for r in run_benchmark(trace, cfg)]
    except (TraceError, OSError) as exc:
        fail(f"--trace: {exc}")
        raise
    if as_json:
        print_json(rows)
        return
    console.print(table(rows, f"predictor accuracy ({rows[0]['functions'] if rows else 0} functions)"))


@bench_app.command("coldstart")
def coldstart_bench(
    models: Annotated[str, typer.Option(help="Comma-separated zoo models.")] = "tiny-mlp,resnet50",
    configs: Annotated[str, typer.Option(help="Comma-separated hardware configs.")] = "cpu-1,cpu-2",
    starts: Annotated[int, typer.Option(help="Cold starts per (model, config), and floor runs.")] = 5,
    image: Annotated[str, typer.Option(envvar="SMILESS_WORKER_IMAGE")] = "smiless-worker:latest",
    as_json: JsonOpt = False,
) -> None:
    """Cold starts of real worker containers, per phase, against the floor measured in the same
    run: a bare container of the same image that imports torch and builds the same model."""
    from smiless.bench.coldstart import run_coldstart

    cat = load_catalogue(Settings().catalogue)
    names = [c for c in configs.split(",") if c]
    for c in names:
        if c not in cat:
            fail(f"--configs: unknown hardware config {c!r}")
    try:
        with console.status("cold-starting containers..."):
            rows = asyncio.run(run_coldstart(image, models.split(","), [cat[c] for c in names], starts))
    except BackendError as exc:
        fail(str(exc))
        raise
    if as_json:
        print_json(rows)
        return
    flat = [{k: v for k, v in r.items() if k != "phases_ms"} for r in rows]
    console.print(table(flat, "cold start vs floor (ms)"))


@bench_app.command("gateway")
def gateway_bench(
    concurrency: Annotated[
        str, typer.Option(help="Comma-separated numbers of closed-loop clients.")
    ] = "1,4,16,64",
    duration: Annotated[float, typer.Option(help="Seconds per (concurrency, mode).")] = 5.0,
    modes: Annotated[str, typer.Option(help="unary, stream or both (comma-separated).")] = "unary,stream",
    batch: Annotated[str, typer.Option(help="Comma-separated planned batch sizes per stage.")] = "1",
    as_json: JsonOpt = False,
) -> None:
    """Gateway overhead on a warm 3-stage chain of trivial models against the same chain
    called stage by stage directly on the workers, on a fresh embedded stack."""
    from smiless.bench.gateway import bench_gateway

    try:
        levels = [int(c) for c in concurrency.split(",") if c]
    except ValueError:
        fail(f"--concurrency: not a list of integers: {concurrency!r}")
        raise
    if not levels or min(levels) < 1:
        fail("--concurrency: give at least one number >= 1")
    chosen = [m for m in modes.split(",") if m]
    if not chosen or any(m not in ("unary", "stream") for m in chosen):
        fail(f"--modes: choose from unary, stream (got {modes!r})")
    if duration <= 0:
        fail("--duration: must be positive")
    try:
        sizes = tuple(int(b) for b in batch.split(",") if b)
    except ValueError:
        fail(f"--batch: not a list of integers: {batch!r}")
        raise
    if not sizes or min(sizes) < 1 or max(sizes) > 64:
        fail("--batch: sizes from 1 to 64 (tiny-mlp's max_batch)")
    with console.status("benchmarking the gateway...") as status:
        rows = bench_gateway(levels, duration, chosen, progress=lambda m: status.update(m), batches=sizes)
    if as_json:
        print_json(rows)
        return
    keys = [
        "mode",
        "batch",
        "concurrency",
        "rps",
        "p50_ms",
        "p99_ms",
        "direct_p50_ms",
        "overhead_per_stage_ms",
    ]
    keys += ["gateway_cpu_ms", "workers_cpu_ms", "client_cpu_ms", "others_cpu_ms"]
    shown = [{k: r[k] for k in keys} for r in rows]
    console.print(table(shown, "gateway: 3-stage chain of tiny-mlp, closed loop (ms; CPU ms per invocation)"))


from smiless.cli.sim import bench_policies  # noqa: E402

bench_app.command("policies")(bench_policies)
