"""The worker backend interface."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from smiless import zoo
from smiless.catalogue import HardwareConfig

if TYPE_CHECKING:  # the worker imports this module first thing: no policy package at its start
    from smiless.policy.capacity import Capacity, Demand


class BackendError(RuntimeError):
    """An instance could not be started (the message says why, with the worker's log tail)."""


class ModelError(BackendError):
    """The model names no usable model (unknown, or an unreadable TorchScript file): the
    request is wrong, not the backend (callers answer INVALID_ARGUMENT)."""


# OpenMP threads that sleep instead of spinning while they wait. Spinning burns a CPU quota
# (docker's nano_cpus) and stalls on a shared host: measured here in a --cpus 2 container on a
# loaded 2-core machine, warm inference with 2 threads took 1.9-3.7 s (ResNet-50), 2.9-4.5 s
# (textgeneration), 98-475 ms (distilbert, batch 4) spinning, and 0.28-0.7 s, 0.16-0.18 s,
# 10-26 ms with PASSIVE.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}

PARENT_PID_ENV = "SMILESS_WORKER_PARENT_PID"
"""Set by the process backend: the worker asks the kernel to stop it when that process dies."""

EXIT_BAD_MODEL = 2  # the worker's exit code when it cannot load its model (smiless/worker/__main__.py)


def start_error(message: str, exit_code: int | None) -> BackendError:
    """The error of a failed start: a ModelError when the worker exited refusing its model."""
    return ModelError(message) if exit_code == EXIT_BAD_MODEL else BackendError(message)


def check_model(model: str) -> zoo.ModelSpec:
    """The model's contract, or ModelError saying why there is none (before anything starts)."""
    try:
        return zoo.resolve(model)
    except zoo.ZooError as exc:
        raise ModelError(f"model: {exc}") from exc


@dataclass
class AdoptedWorker:
    """A worker an earlier controller run left behind."""

    instance_id: str
    address: str
    model: str
    config: str
    running: bool


@dataclass
class StartedWorker:
    instance_id: str
    address: str  # host:port of the worker's gRPC endpoint
    spawned_at: float  # epoch seconds of the start command
    ready_at: float
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds


class ExitWatch:
    """The exit watch every backend keeps: one task per instance that ends with its exit code."""

    def __init__(self) -> None:
        self.exits: dict[str, asyncio.Task[int]] = {}

    async def wait_exit(self, instance_id: str) -> int:
        task = self.exits.get(instance_id)
        if task is None:
            raise BackendError(f"unknown instance {instance_id}")
        return await asyncio.shield(task)

    def exit_code(self, instance_id: str) -> int | None:
        """The worker's exit code if its watch has seen it exit, else None."""
        watch = self.exits.get(instance_id)
        if watch is None or not watch.done() or watch.cancelled() or watch.exception() is not None:
            return None
        return watch.result()


def host_gpus() -> int:
    """The NVIDIA devices of this machine, counted by their device nodes (no torch import)."""
    return sum(1 for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name))


def host_capacity(held: Iterable[Demand], gpus: int) -> Capacity:
    """This machine as one node: its cores and memory, with what `held` (the instances a
    backend runs here) takes off what is free."""
    from smiless.policy.capacity import Capacity, Node, reserve

    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    cpus = float(os.cpu_count() or 1)
    whole = Node("host", "127.0.0.1", cpus, float(gpus), memory_mb, cpus, float(gpus), memory_mb)
    return reserve(Capacity((whole,)), {"host": list(held)})


class WorkerBackend(Protocol):
    name: str

    async def start(
        self, instance_id: str, model: str, config: HardwareConfig, *, app: str = "", function: str = ""
    ) -> StartedWorker:
        """Start a worker and return once its health check says SERVING. `app` and `function`
        label it (the Ray backend spreads a function's instances across nodes)."""

    async def stop(self, instance_id: str) -> None:
        """Stop gracefully within the backend's deadline, then force."""

    async def wait_exit(self, instance_id: str) -> int:
        """Return the worker's exit code once it has exited."""

    async def close(self) -> None:
        """Stop every instance this backend started."""

    async def adopt(self) -> list[AdoptedWorker]:
        """Take back control of the workers an earlier run left; remove the dead ones."""

    async def capacity(self) -> Capacity:
        """The nodes this backend runs instances on, with what is free on each now."""
