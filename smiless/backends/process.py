"""Process backend: each instance is a local child process running `python -m smiless.worker`.

For machines without Docker and for GPU hosts without a container GPU runtime. The
hardware config becomes torch's intra-op thread count (no hard CPU limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smiless.backends.base import (
    PARENT_PID_ENV,
    WORKER_ENV,
    AdoptedWorker,
    BackendError,
    ExitWatch,
    StartedWorker,
    check_model,
    host_capacity,
    host_gpus,
    start_error,
)
from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.capacity import Capacity, Demand
from smiless.v1 import worker_pb2, worker_pb2_grpc


def host_has_gpu() -> bool:
    """An NVIDIA device node: what a GPU config's worker process needs (no torch import)."""
    return Path("/dev/nvidiactl").exists()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def wait_serving(address: str, deadline: float, alive: asyncio.Task[int] | None = None) -> None:
    """Poll the standard health check until SERVING; fail fast if the process exits.

    The channel retries its connection every 20-100 ms: gRPC's default reconnect backoff
    (1 s and growing) would add up to a second to every measured cold start."""
    options = [
        ("grpc.initial_reconnect_backoff_ms", 20),
        ("grpc.min_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 100),
    ]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if alive is not None and alive.done():
                raise BackendError(f"worker exited with code {alive.result()} before it was ready")
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.time() > deadline:
                raise BackendError(f"worker at {address} not ready before the start timeout")
            await asyncio.sleep(0.05)


async def init_phases(address: str) -> dict[str, float]:
    """The init phases a ready worker reports about itself (phase -> seconds)."""
    async with grpc.aio.insecure_channel(address) as channel:
        info = await worker_pb2_grpc.WorkerStub(channel).Describe(worker_pb2.DescribeRequest(), timeout=5)
    return {p.name: p.duration.ToNanoseconds() / 1e9 for p in info.init_phases}


class ProcessBackend(ExitWatch):
    name = "process"

    def __init__(
        self,
        host: str = "127.0.0.1",
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 5.0,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="smiless-workers-"))
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.held: dict[str, Demand] = {}

    def _log_tail(self, instance_id: str, lines: int = 5) -> str:
        try:
            text = (self.log_dir / f"{instance_id}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    async def start(
        self, instance_id: str, model: str, config: HardwareConfig, *, app: str = "", function: str = ""
    ) -> StartedWorker:
        check_model(model)  # a TorchScript model's path travels in the name: --model torchscript:/p
        if config.kind is Kind.GPU and not host_has_gpu():
            raise BackendError(f"{config.name} needs a GPU, but this machine has none (no /dev/nvidiactl)")
        port = free_port(self.host)
        address = f"{self.host}:{port}"
        spawned = time.time()
        env = {
            **os.environ,
            **WORKER_ENV,
            "SMILESS_WORKER_SPAWNED_AT": f"{spawned:.6f}",
            "OMP_NUM_THREADS": str(max(1, math.floor(config.cores))),
            # the worker exits with this process (smiless.worker.__main__): none can be adopted
            PARENT_PID_ENV: str(os.getpid()),
        }
        if config.kind is Kind.GPU:
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = f"{config.gpu_share:g}"
        log = open(self.log_dir / f"{instance_id}.log", "wb")  # noqa: SIM115 - owned by the child
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "smiless.worker",
                "--model",
                model,
                "--config",
                config.name,
                "--threads",
                str(max(1, math.floor(config.cores))),
                "--host",
                self.host,
                "--port",
                str(port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs[instance_id] = proc
        self.held[instance_id] = Demand.of(config)
        self.exits[instance_id] = asyncio.create_task(proc.wait())
        try:
            await wait_serving(address, spawned + self.start_timeout_s, self.exits[instance_id])
            phases = await init_phases(address)
        except (BackendError, grpc.aio.AioRpcError) as exc:
            exit_code = proc.returncode
            await self.stop(instance_id)
            tail = self._log_tail(instance_id)
            raise start_error(
                f"{model} on {config.name}: {exc}" + (f" (log: {tail})" if tail else ""), exit_code
            ) from exc
        ready = time.time()
        return StartedWorker(instance_id, address, spawned, ready, phases)

    async def stop(self, instance_id: str) -> None:
        proc = self.procs.pop(instance_id, None)
        task = self.exits.pop(instance_id, None)
        self.held.pop(instance_id, None)
        if proc is None or task is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(task), self.stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        await task

    async def adopt(self) -> list[AdoptedWorker]:
        """Child processes of an earlier run cannot be controlled again: none to adopt."""
        return []

    async def capacity(self) -> Capacity:
        """This host, less the configs of the workers it runs (threads, not hard limits)."""
        return host_capacity(self.held.values(), host_gpus())

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(i) for i in list(self.procs)), return_exceptions=True)
