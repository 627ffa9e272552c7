"""The worker backend interface."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from smiless import zoo
from smiless.catalogue import HardwareConfig


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
    """The exit watch both backends keep: one task per instance that ends with its exit code."""

    def __init__(self) -> None:
        self.exits: dict[str, asyncio.Task[int]] = {}

    async def wait_exit(self, instance_id: str) -> int:
        task = self.exits.get(instance_id)
        if task is None:
            raise BackendError(f"unknown instance {instance_id}")
        return await asyncio.shield(task)


class WorkerBackend(Protocol):
    name: str

    async def start(self, instance_id: str, model: str, config: HardwareConfig) -> StartedWorker:
        """Start a worker and return once its health check says SERVING."""

    async def stop(self, instance_id: str) -> None:
        """Stop gracefully within the backend's deadline, then force."""

    async def wait_exit(self, instance_id: str) -> int:
        """Return the worker's exit code once it has exited."""

    async def close(self) -> None:
        """Stop every instance this backend started."""

    async def adopt(self) -> list[AdoptedWorker]:
        """Take back control of the workers an earlier run left; remove the dead ones."""
