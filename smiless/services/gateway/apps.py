"""The gateway's cache of apps and their plans, compiled for the hot path.

Invoke reads only this cache. An app is loaded from Redis on its first invocation (that is
how an unknown app gets NOT_FOUND); afterwards a background task reloads every cached app
and its plan each `refresh_s`, so a new plan (batch sizes, predicted latencies) or a
re-registration reaches the data path within that time, and an app deleted elsewhere
disappears. While Redis is unreachable the last copy keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

import grpc
import numpy as np

from smiless import appspec, logs, tensors, zoo
from smiless.aio import stop_task
from smiless.policy.workflow import timing
from smiless.protoutil import get_seconds
from smiless.server import RpcError
from smiless.store import Store, StoreError
from smiless.v1 import gateway_pb2, optimizer_pb2

log = logging.getLogger("smiless.gateway.apps")


@dataclass
class AppEntry:
    """One app as the data path needs it: the spec (its DAG is `spec.dag`) and the plan's numbers."""

    spec: appspec.AppSpec
    version: int
    models: dict[str, str]
    entry_model: zoo.ModelSpec
    batch: dict[str, int] = field(default_factory=dict)  # planned batch size per function
    max_batch: dict[str, int] = field(default_factory=dict)  # the model's largest batch
    latency: dict[str, float] = field(default_factory=dict)  # planned stage latency (s)
    reserve: dict[str, float] = field(default_factory=dict)  # planned latency after the stage (s)
    # This function and the next ones in execution order: what a cold invocation asks the
    # optimizer to start when the stage begins (a window, so starts overlap without
    # starting a whole DAG's workers at once on a small host).
    ahead: dict[str, list[str]] = field(default_factory=dict)
    planned: bool = False
    # The entry input's (dtype code, shape, bytes) when its shape is fixed: an input that
    # matches all three is valid without decoding it.
    input_fits: tuple[int, tuple[int, ...], int] | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def compile_app(app: gateway_pb2.App, plan: optimizer_pb2.AppPlan | None, start_window: int = 2) -> AppEntry:
    spec = appspec.validate(appspec.from_proto(app.spec))
    order = spec.dag.functions
    models = {f.name: f.model for f in spec.functions}
    entry = AppEntry(
        spec=spec, version=app.version, models=models, entry_model=zoo.MODELS[models[spec.entry]]
    )
    contract = entry.entry_model.input
    if not contract.variable:
        nbytes = math.prod(contract.shape) * np.dtype(contract.dtype).itemsize
        entry.input_fits = (tensors.dtype_code(contract.dtype), tuple(contract.shape), nbytes)
    planned = {fp.function: fp for fp in plan.functions} if plan is not None else {}
    entry.planned = bool(planned)
    for f in order:
        fp = planned.get(f)
        max_batch = zoo.MODELS[models[f]].max_batch
        entry.max_batch[f] = max(1, max_batch)
        entry.batch[f] = max(1, min(fp.batch_size, max_batch)) if fp is not None else 1
        entry.latency[f] = get_seconds(fp.latency) if fp is not None else 0.0
    for i, f in enumerate(order):
        entry.ahead[f] = list(order[i : i + max(1, start_window)])
    if planned.keys() >= set(order) and all(fp.HasField("downstream") for fp in planned.values()):
        entry.reserve = {f: get_seconds(planned[f].downstream) for f in order}
    else:  # no plan, or one stored before plans carried it: timed once here by the policy's rule
        entry.reserve = dict(timing(spec.dag, entry.latency).tail)
    return entry


class AppCache:
    def __init__(self, store: Store, refresh_s: float = 1.0, start_window: int = 2) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.start_window = start_window
        self.entries: dict[str, AppEntry] = {}
        self.healthy = True
        self._task: asyncio.Task[None] | None = None

    async def get(self, name: str) -> AppEntry:
        """The cached app; loaded from Redis on a miss (INVALID_ARGUMENT / NOT_FOUND)."""
        entry = self.entries.get(name)
        if entry is not None:
            return entry
        if not name:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "app: required")
        loaded = await self._load(name)
        if loaded is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"app: no app named {name!r}")
        self.entries[name] = loaded
        return loaded

    def forget(self, name: str) -> None:
        self.entries.pop(name, None)

    async def _load(self, name: str) -> AppEntry | None:
        app = await self.store.get_app(name)
        if app is None:
            return None
        return compile_app(app, await self.store.get_plan(name), self.start_window)

    async def refresh(self) -> None:
        for name in list(self.entries):
            try:
                fresh = await self._load(name)
            except (StoreError, OSError) as exc:
                if self.healthy:
                    logs.event(log, "apps: redis lost; serving cached apps", logging.WARNING, error=str(exc))
                self.healthy = False
                return
            except appspec.AppSpecError as exc:  # a stored app that no longer validates
                logs.event(log, "apps: stored app invalid", logging.WARNING, app=name, error=str(exc))
                fresh = None
            if fresh is None:
                self.entries.pop(name, None)
            else:
                self.entries[name] = fresh
        self.healthy = True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await stop_task(self._task)
