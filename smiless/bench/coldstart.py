"""Cold-start benchmark of the docker backend (`smiless bench coldstart`).

For each (model, config): N cold starts of a real worker container, timed per phase (the
backend's container create/start plus the worker's own phases), and, in the same run, the
floor: N bare containers of the same image and limits that only import torch and build the
same model (with its transformers modules), timed from create until the model is built.
overhead_ratio = total p50 / floor p50 says what our worker adds (gRPC server, warm-up
inference, health check) on top of the unavoidable part.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import uuid
from typing import Any

from smiless.backends.base import WORKER_ENV
from smiless.backends.docker import DockerBackend
from smiless.catalogue import HardwareConfig


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _floor_once(backend: DockerBackend, model: str, config: HardwareConfig) -> float:
    """Create -> the model is built, in a bare container that prints a marker at that point
    (timed when the marker arrives on the log stream: process exit is not part of a start)."""
    threads = max(1, math.floor(config.cores))
    code = (
        f"import torch; torch.set_num_threads({threads}); "
        f"from smiless.worker import models; models.build({model!r}); print('BUILT', flush=True)"
    )
    t0 = time.perf_counter()
    c = backend.client.containers.create(
        backend.image,
        command=["python", "-c", code],
        environment={**WORKER_ENV, "OMP_NUM_THREADS": str(threads)},  # as the worker's
        nano_cpus=int(config.cores * 1e9),
        mem_limit=f"{config.memory_mb}m",
        detach=True,
    )
    try:
        c.start()
        for chunk in c.logs(stream=True, follow=True):
            if b"BUILT" in chunk:
                return time.perf_counter() - t0
        raise RuntimeError(f"floor container of {model} exited without building it")
    finally:
        c.remove(force=True)


async def run_coldstart(
    image: str, models: list[str], configs: list[HardwareConfig], starts: int
) -> list[dict[str, Any]]:
    backend = DockerBackend(image)
    rows: list[dict[str, Any]] = []
    try:
        for model in models:
            for config in configs:
                phases: dict[str, list[float]] = {}
                totals: list[float] = []
                floors: list[float] = []
                for _ in range(starts):
                    # interleave worker and floor runs so drift in the machine's load hits both
                    name = f"bench-{uuid.uuid4().hex[:8]}"
                    w = await backend.start(name, model, config)
                    await backend.stop(name)
                    totals.append(w.ready_at - w.spawned_at)
                    for k, v in w.phases.items():
                        phases.setdefault(k, []).append(v)
                    floors.append(await asyncio.to_thread(_floor_once, backend, model, config))
                total_ms = statistics.median(totals) * 1000
                floor_ms = statistics.median(floors) * 1000
                rows.append(
                    {
                        "model": model,
                        "config": config.name,
                        "starts": starts,
                        "phases_ms": {
                            k: {"p50": round(_p(v, 50) * 1000, 1), "p90": round(_p(v, 90) * 1000, 1)}
                            for k, v in phases.items()
                        },
                        "total_ms": round(total_ms, 1),
                        "total_p90_ms": round(_p(totals, 90) * 1000, 1),
                        "floor_ms": round(floor_ms, 1),
                        "overhead_ratio": round(total_ms / floor_ms, 3),
                    }
                )
    finally:
        await backend.close()
    return rows
