"""Measuring a model through a worker backend: cold starts and warm batched latency.

A run is a list of steps (one cold start, or one batch size's warm latency, on one
config). Each finished step's result is handed to `save` before the next begins, so an
interrupted run resumes where it stopped (`done` holds the saved results).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from smiless import tensors, zoo
from smiless.backends.base import WorkerBackend
from smiless.catalogue import HardwareConfig
from smiless.v1 import worker_pb2, worker_pb2_grpc

MIN_REPS, MAX_REPS, REP_BUDGET_S = 10, 60, 2.0


@dataclass(frozen=True)
class Step:
    kind: str  # "cold" or "warm"
    config: str
    index: int  # cold-start number, or batch size

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.config}:{self.index}"

    def describe(self) -> str:
        what = f"cold start {self.index + 1}" if self.kind == "cold" else f"batch {self.index}"
        return f"{self.config}: {what}"


def plan_steps(configs: Sequence[str], cold_starts: int, batch_sizes: Sequence[int]) -> list[Step]:
    steps: list[Step] = []
    for c in configs:
        steps += [Step("cold", c, i) for i in range(cold_starts)]
        steps += [Step("warm", c, b) for b in batch_sizes]
    return steps


async def _cold_start(backend: WorkerBackend, model: str, config: HardwareConfig) -> dict[str, float]:
    """One cold start: the worker's own phases plus `serve_ready`, the rest of the time
    from the start command until the health check answered SERVING."""
    instance = f"profile-{model}-{uuid.uuid4().hex[:8]}"
    started = await backend.start(instance, model, config)
    await backend.stop(instance)
    total = started.ready_at - started.spawned_at
    phases = dict(started.phases)
    phases["serve_ready"] = max(0.0, total - sum(phases.values()))
    return phases


async def _warm(address: str, spec: zoo.ModelSpec, batch: int) -> dict[str, float]:
    """Median, p10 and p90 of the round-trip time of one batched Infer call."""
    req = worker_pb2.InferRequest(inputs=[tensors.to_proto(spec.example_input(seed=i)) for i in range(batch)])
    async with grpc.aio.insecure_channel(address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        for _ in range(2):  # warm-up calls, not measured
            await stub.Infer(req, timeout=60)
        times: list[float] = []
        began = time.monotonic()
        while len(times) < MAX_REPS and (len(times) < MIN_REPS or time.monotonic() - began < REP_BUDGET_S):
            t0 = time.perf_counter()
            await stub.Infer(req, timeout=60)
            times.append(time.perf_counter() - t0)
    deciles = statistics.quantiles(times, n=10)
    return {
        "median": statistics.median(times),
        "p10": deciles[0],
        "p90": deciles[-1],
        "reps": float(len(times)),
    }


async def run(
    backend: WorkerBackend,
    model: str,
    configs: Mapping[str, HardwareConfig],
    steps: Sequence[Step],
    done: Mapping[str, str],
    save: Callable[[Step, str], Awaitable[None]],
) -> AsyncIterator[tuple[int, Step]]:
    """Run the steps not in `done`, yielding (finished count, step) after each."""
    spec = zoo.MODELS[model]
    finished = sum(1 for s in steps if s.key in done)
    warm: tuple[str, str, str] | None = None  # (config, instance, address) kept for warm steps
    try:
        for step in steps:
            if step.key in done:
                continue
            config = configs[step.config]
            if warm is not None and (step.kind == "cold" or warm[0] != step.config):
                # At most one worker at a time, so measurements do not compete for cores.
                await backend.stop(warm[1])
                warm = None
            if step.kind == "cold":
                result = await _cold_start(backend, model, config)
            else:
                if warm is None:
                    instance = f"profile-{model}-warm-{uuid.uuid4().hex[:8]}"
                    started = await backend.start(instance, model, config)
                    warm = (step.config, instance, started.address)
                result = await _warm(warm[2], spec, step.index)
            await save(step, json.dumps(result))
            finished += 1
            yield finished, step
    finally:
        if warm is not None:
            await backend.stop(warm[1])
