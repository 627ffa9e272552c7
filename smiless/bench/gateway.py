"""Gateway overhead benchmark (`smiless bench gateway`).

Starts the embedded stack (its own Redis and the four services on free loopback ports),
registers a 3-stage chain of `tiny-mlp` stages, warms one instance per stage, then for each
planned batch size and concurrency runs closed-loop clients for `duration_s`: each client
sends an invocation, waits for its answer, sends the next. In the same run, at the same
concurrency, the benchmark calls the same chain itself, stage after stage, directly on the
same workers (the floor: what any client would pay without a gateway), over the same kind
of worker call the gateway makes (one InferStream per worker; unary Infer with
SMILESS_WORKER_STREAMS=false). Direct and gateway runs alternate in 1 s slices, so that a
shared machine's changing load weighs on both alike. Throughput counts the calls completed
inside the window (not the drain after it). overhead_per_stage_ms = (p50 - direct_p50) /
stages.

Modes: `unary` (one Invoke call per invocation) and `stream` (each client keeps one
InvokeStream open and sends its invocations over it, still one at a time). Batch sizes > 1
store a plan that batches every stage (what the optimizer plans for overlapping requests):
the gateway then sends one Infer per batch; the direct floor stays one call per request.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from smiless import appspec, tensors, zoo
from smiless.config import SERVICE_NAMES, Settings
from smiless.protoutil import set_seconds
from smiless.services.gateway.streams import WorkerCallError, WorkerStream
from smiless.stack import LocalStack, free_port
from smiless.store import Store
from smiless.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, optimizer_pb2, worker_pb2_grpc

APP = "bench-chain"
STAGES = ("s1", "s2", "s3")
MODEL = "tiny-mlp"
Call = Callable[[int], Awaitable[None]]
PLAN_PICKUP_S = 1.5  # > the gateway's default app_refresh_s


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def chain_spec() -> appspec.AppSpec:
    return appspec.AppSpec(
        APP,
        1.0,
        tuple(appspec.FunctionSpec(s, MODEL) for s in STAGES),
        tuple(itertools.pairwise(STAGES)),
        "3-stage chain of trivial models (gateway benchmark)",
    )


async def closed_loop(
    concurrency: int, duration_s: float, one: Callable[[int], Awaitable[None]]
) -> tuple[list[float], int, int]:
    """`concurrency` clients calling `one` in a loop for `duration_s`: (latencies in s of the
    calls that succeeded, failures, calls that completed inside the window). Throughput is
    the last over `duration_s`: the calls still running at the end (the drain) are not
    counted in it."""
    latencies: list[float] = []
    failures = 0
    inside = 0
    stop_at = time.perf_counter() + duration_s

    async def client(k: int) -> None:
        nonlocal failures, inside
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await one(k)
            except (grpc.aio.AioRpcError, WorkerCallError):
                failures += 1
                continue
            t1 = time.perf_counter()
            latencies.append(t1 - t0)
            inside += t1 < stop_at

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    return latencies, failures, inside


class Tally:
    """What one kind of run (direct, unary, stream) did over its slices."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failed = 0
        self.inside = 0
        self.seconds = 0.0
        self.cpu = [0.0, 0.0, 0.0, 0.0]

    def add(self, got: tuple[list[float], int, int], seconds: float, cpu: list[float]) -> None:
        self.latencies += got[0]
        self.failed += got[1]
        self.inside += got[2]
        self.seconds += seconds
        self.cpu = [a + b for a, b in zip(self.cpu, cpu, strict=True)]

    def per_call_ms(self, i: int) -> float:
        return self.cpu[i] * 1000 / max(1, len(self.latencies))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(ports: set[int]) -> list[int]:
    """Pids of the process-backend workers listening on `ports` (from their command lines)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"smiless.worker" in args and b"--port" in args:
            i = args.index(b"--port")
            if i + 1 < len(args) and args[i + 1].isdigit() and int(args[i + 1]) in ports:
                found.append(int(d.name))
    return found


def _direct(workers: list[WorkerStream], x: common_pb2.Tensor) -> Call:
    async def one(_: int) -> None:
        t = x
        for w in workers:
            t = (await w.infer([t], 30)).outputs[0]

    return one


def _unary(gw: gateway_pb2_grpc.GatewayStub, request: gateway_pb2.InvokeRequest) -> Call:
    async def one(_: int) -> None:
        await gw.Invoke(request, timeout=30)

    return one


def _streamed(calls: list[Any], request: gateway_pb2.InvokeRequest) -> Call:
    item = gateway_pb2.InvokeStreamRequest(invocation=request)

    async def one(k: int) -> None:
        await calls[k].write(item)
        got = await calls[k].read()
        if not isinstance(got, gateway_pb2.InvokeStreamResponse) or got.code != 0:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNKNOWN,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details=str(getattr(got, "message", got)),
            )

    return one


async def run_gateway_bench(
    gateway: str,
    redis_url: str,
    concurrencies: list[int],
    duration_s: float,
    modes: list[str],
    progress: Callable[[str], None] = lambda _: None,
    gateway_pid: int | None = None,
    batches: tuple[int, ...] = (1,),
    other_pids: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    x = tensors.to_proto(zoo.MODELS[MODEL].example_input(seed=1))
    async with grpc.aio.insecure_channel(gateway) as ch:
        gw = gateway_pb2_grpc.GatewayStub(ch)
        await gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(chain_spec()), replace=True))
        progress("warming one instance per stage")
        request = gateway_pb2.InvokeRequest(app=APP, input=x)
        first = await gw.Invoke(request, timeout=300)
        for _ in range(50):
            await gw.Invoke(request, timeout=30)
        store = Store(redis_url)
        try:
            by_id = {i.id: i for i in await store.list_instances() if i.app == APP}
        finally:
            await store.close()

        async def plan_batch(size: int) -> None:
            """Store a plan that batches every stage by `size` (as the optimizer would for
            overlapping requests); the gateway picks it up within its refresh interval."""
            plan = optimizer_pb2.AppPlan(app=APP, feasible=True)
            for f in STAGES if size > 1 else ():
                fp = plan.functions.add(function=f, config="cpu-1", batch_size=size, instances=1)
                set_seconds(fp.latency, 0.001)
            s = Store(redis_url)
            try:
                await s.put_plan(plan)
            finally:
                await s.close()
            await asyncio.sleep(PLAN_PICKUP_S)

        used = {s.function: by_id[s.instance_id].address for s in first.stages}
        wpids = worker_pids({int(a.rsplit(":", 1)[1]) for a in used.values()})
        worker_channels = {a: grpc.aio.insecure_channel(a) for a in set(used.values())}
        # The floor calls the workers the way the gateway does (one InferStream per worker,
        # or unary Infer when SMILESS_WORKER_STREAMS=false), with the same client code.
        streamed = Settings().worker_streams
        by_address = {
            a: WorkerStream(worker_pb2_grpc.WorkerStub(ch), streamed) for a, ch in worker_channels.items()
        }
        workers = [by_address[used[s]] for s in STAGES]
        rows: list[dict[str, Any]] = []

        def cpu() -> tuple[float, float, float, float]:
            """CPU seconds so far: the gateway, the three workers, this client process, the
            rest of the stack (Redis, optimizer, predictor, profiler)."""
            gw_cpu = cpu_seconds(gateway_pid) if gateway_pid else math.nan
            w_cpu = sum(cpu_seconds(p) for p in wpids) if len(wpids) == len(STAGES) else math.nan
            rest = sum(cpu_seconds(p) for p in other_pids) if other_pids else math.nan
            return gw_cpu, w_cpu, time.process_time(), rest

        batched = 1
        try:
            for size in batches:
                if size != batched:
                    await plan_batch(size)
                    batched = size
                for c in concurrencies:
                    # Direct and gateway runs alternate in 1 s slices, so that the load of
                    # the (shared) machine drifting meanwhile weighs on both alike.
                    slices = max(1, round(duration_s))
                    calls = (
                        [gw.InvokeStream(timeout=duration_s * (len(modes) + 1) + 60) for _ in range(c)]
                        if "stream" in modes
                        else []
                    )
                    runs: dict[str, Call] = {
                        "direct": _direct(workers, x),
                        "unary": _unary(gw, request),
                        "stream": _streamed(calls, request),
                    }
                    tallies = {k: Tally() for k in ("direct", *modes)}
                    for i in range(slices):
                        for kind, tally in tallies.items():
                            progress(f"batch {size}, concurrency {c}: {kind} ({i + 1}/{slices})")
                            before = cpu()
                            got = await closed_loop(c, duration_s / slices, runs[kind])
                            tally.add(
                                got, duration_s / slices, [b - a for a, b in zip(before, cpu(), strict=True)]
                            )
                    for call in calls:
                        await call.done_writing()
                    d = tallies["direct"]
                    direct_p50 = percentile(d.latencies, 50)
                    for mode in modes:
                        t = tallies[mode]
                        p50 = percentile(t.latencies, 50)
                        rows.append(
                            {
                                "mode": mode,
                                "worker_calls": "stream" if streamed else "unary",
                                "batch": size,
                                "concurrency": c,
                                "invocations": len(t.latencies),
                                "failed": t.failed,
                                "rps": t.inside / t.seconds,
                                "p50_ms": p50 * 1000,
                                "p99_ms": percentile(t.latencies, 99) * 1000,
                                "direct_p50_ms": direct_p50 * 1000,
                                "direct_rps": d.inside / d.seconds,
                                "overhead_per_stage_ms": (p50 - direct_p50) * 1000 / len(STAGES),
                                # CPU milliseconds per invocation, by process (where the time goes)
                                "gateway_cpu_ms": t.per_call_ms(0),
                                "workers_cpu_ms": t.per_call_ms(1),
                                "client_cpu_ms": t.per_call_ms(2),
                                "others_cpu_ms": t.per_call_ms(3),
                                "direct_workers_cpu_ms": d.per_call_ms(1),
                                "direct_client_cpu_ms": d.per_call_ms(2),
                            }
                        )
        finally:
            if batched != 1:
                await plan_batch(1)
            for w in by_address.values():
                await w.close()
            for wc in worker_channels.values():
                await wc.close()
    return rows


def bench_gateway(
    concurrencies: list[int],
    duration_s: float,
    modes: list[str],
    progress: Callable[[str], None] = lambda _: None,
    env: dict[str, str] | None = None,
    batches: tuple[int, ...] = (1,),
) -> list[dict[str, Any]]:
    """Run the benchmark on a fresh embedded stack; stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="smiless-bench-gw-") as tmp:
        stack = LocalStack(
            Path(tmp),
            ports={n: free_port() for n in SERVICE_NAMES},
            extra_env={"SMILESS_LOG_LEVEL": "WARNING", **(env or {})},
        )
        progress("starting the stack")
        stack.start()
        try:
            return asyncio.run(
                run_gateway_bench(
                    stack.addresses["gateway"],
                    str(stack.redis_url),
                    concurrencies,
                    duration_s,
                    modes,
                    progress,
                    stack.procs["gateway"].pid,
                    batches,
                    tuple(p.pid for n, p in stack.procs.items() if n != "gateway"),
                )
            )
        finally:
            stack.stop()
