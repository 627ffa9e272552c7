"""The optimizer's instances: start, stop, drain, exit watch and re-adoption, the start slots
and the host's observed inits. Nothing else starts or stops workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

import grpc

from smiless import logs
from smiless.aio import stop_task
from smiless.backends.base import BackendError, ModelError, WorkerBackend
from smiless.catalogue import HardwareConfig
from smiless.config import Settings
from smiless.policy.controller import InstanceView
from smiless.policy.ondemand import on_demand_count, on_demand_shape
from smiless.policy.profile import ObservedInits
from smiless.protoutil import set_seconds
from smiless.server import RpcError, grpc_options
from smiless.services.common import seconds
from smiless.store import Store
from smiless.v1 import common_pb2, worker_pb2, worker_pb2_grpc

log = logging.getLogger("smiless.optimizer")
DRAIN_S = 0.2
"""A stopping instance is shown DRAINING this long first, so routers stop picking it."""
DESCRIBE_TIMEOUT_S = 1.0


class InstanceManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        backend: WorkerBackend,
        catalogue: Mapping[str, HardwareConfig],
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.catalogue = catalogue
        self.instances: dict[str, common_pb2.Instance] = {}
        """Live instances (STARTING and READY) this optimizer runs."""
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.tasks: set[asyncio.Task[object]] = set()
        self.start_slots = asyncio.Semaphore(settings.max_parallel_starts)
        self.observed_inits = ObservedInits()
        """This host's recent starts, which widen the profiles' inits (`ObservedInits`)."""
        self.stubs: dict[str, worker_pb2_grpc.WorkerStub] = {}
        self.channels: dict[str, grpc.aio.Channel] = {}

    # --- the whole fleet -----------------------------------------------------------------
    async def adopt(self) -> None:
        """Re-adopt the running workers an earlier run left (containers); record the rest
        of this backend's registry entries as stopped, and stop workers nobody knows."""
        alive = {w.instance_id: w for w in await self.backend.adopt() if w.running and w.address}
        known: set[str] = set()
        for inst in await self.store.list_instances():
            if inst.backend != self.backend.name:
                continue
            known.add(inst.id)
            if inst.id in alive:
                inst.address = alive[inst.id].address
                inst.state = common_pb2.INSTANCE_STATE_READY
                self.instances[inst.id] = inst
                self.spawn(self._watch(inst.id))
                logs.event(log, "instance re-adopted", instance=inst.id, address=inst.address)
            else:
                inst.state = common_pb2.INSTANCE_STATE_STOPPED
                set_seconds(inst.stopped_at, time.time())
            await self.store.put_instance(inst)
        for orphan in set(alive) - known:
            await self.backend.stop(orphan)
            logs.event(log, "orphan worker removed", instance=orphan)

    async def close(self) -> None:
        """Stop every background task and instance, then the backend."""
        await asyncio.gather(*(stop_task(t) for t in list(self.tasks)))
        await asyncio.gather(
            *(self.stop(i, "optimizer stopped", drain=False) for i in list(self.instances)),
            return_exceptions=True,
        )
        for ch in self.channels.values():
            await ch.close()
        await self.backend.close()

    def room(self, stopping: int = 0) -> int:
        """How many more starts fit this host now, once `stopping` instances are gone: the
        one capacity question (today `max_instances`; a cluster's capacity plugs in here)."""
        return self.settings.max_instances - (len(self.instances) - stopping)

    def of_app(self, app: str) -> list[common_pb2.Instance]:
        return [i for i in self.instances.values() if i.app == app]

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run `coro` in the background; its failure is logged, never lost."""
        task: asyncio.Task[object] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[object]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logs.event(log, "background task failed", logging.WARNING, error=str(exc))

    # --- one instance --------------------------------------------------------------------
    async def stop(self, instance_id: str, reason: str, *, drain: bool = True) -> None:
        """Stop an instance: DRAINING for a moment (routers move away), then stopped."""
        inst = self.instances.pop(instance_id, None)
        if inst is not None and drain and inst.state == common_pb2.INSTANCE_STATE_READY:
            inst.state = common_pb2.INSTANCE_STATE_DRAINING
            await self.store.put_instance(inst)
            await asyncio.sleep(DRAIN_S)
        await self.backend.stop(instance_id)
        if inst is not None:
            inst.state = common_pb2.INSTANCE_STATE_STOPPED
            inst.stop_reason = reason
            set_seconds(inst.stopped_at, time.time())
            await self.store.put_instance(inst)
            logs.event(log, "instance stopped", instance=instance_id, function=inst.function, reason=reason)

    async def _watch(self, instance_id: str) -> None:
        """Mark an instance FAILED as soon as its worker exits on its own."""
        code = await self.backend.wait_exit(instance_id)
        inst = self.instances.pop(instance_id, None)
        if inst is None:
            return
        inst.state = common_pb2.INSTANCE_STATE_FAILED
        inst.stop_reason = f"worker exited with code {code}"
        set_seconds(inst.stopped_at, time.time())
        # Recorded before the clean-up: a stop time written later than it was taken would
        # take back cost that a report in between had already counted.
        with contextlib.suppress(Exception):
            await self.store.put_instance(inst)
        await self.backend.stop(instance_id)
        logs.event(log, "instance failed", logging.WARNING, instance=instance_id, exit_code=code)

    async def start_planned(self, app: str, function: str, config: str, batch: int, reason: str) -> None:
        """A controller start: the function's model from the app spec, the config by name."""
        stored = await self.store.get_app(app)
        models = {f.name: f.model for f in stored.spec.functions} if stored is not None else {}
        cfg = self.catalogue.get(config)
        if function not in models or cfg is None:
            return  # the app or config went away since the plan
        await self.start(app, function, models[function], cfg, batch, reason)

    async def start(
        self, app: str, function: str, model: str, config: HardwareConfig, batch: int, reason: str
    ) -> common_pb2.Instance:
        """Start one instance; it is in `self.instances` (STARTING) from the first moment, so
        the controller counts it and `ensure` waits for it instead of starting more.
        `batch` is what it is sized to serve at once (0: unknown); the gateway batches up to it."""
        # Shielded: a caller that gives up (its deadline) must not leave a half-started worker.
        task = asyncio.ensure_future(self._run_start(app, function, model, config, batch, reason))
        self.tasks.add(task)
        task.add_done_callback(self._reap)
        return await asyncio.shield(task)

    async def _run_start(
        self, app: str, function: str, model: str, config: HardwareConfig, batch: int, reason: str
    ) -> common_pb2.Instance:
        instance_id = f"{app}-{function}-{uuid.uuid4().hex[:8]}"
        inst = common_pb2.Instance(
            id=instance_id,
            app=app,
            function=function,
            model=model,
            config=config.name,
            state=common_pb2.INSTANCE_STATE_STARTING,
            backend=self.backend.name,
            price_per_hour=config.price_per_hour,
            start_reason=reason,
            batch=batch,
        )
        commanded = time.time()
        set_seconds(inst.started_at, commanded)
        self.instances[instance_id] = inst
        await self.store.put_instance(inst)
        try:
            async with self.start_slots:  # concurrent cold starts share the host's cores
                started = await self.backend.start(instance_id, model, config)
        except BackendError as exc:
            self.instances.pop(instance_id, None)
            inst.state = common_pb2.INSTANCE_STATE_FAILED
            inst.stop_reason = f"failed to start: {exc}"
            set_seconds(inst.stopped_at, time.time())
            await self.store.put_instance(inst)
            code = (
                grpc.StatusCode.INVALID_ARGUMENT
                if isinstance(exc, ModelError)
                else grpc.StatusCode.UNAVAILABLE
            )
            raise RpcError(code, f"instance of {function}: {exc}") from exc
        if instance_id not in self.instances:  # stopped while starting (optimizer shutdown)
            await self.backend.stop(instance_id)
            return inst
        # started_at stays the start command's time: a lifetime already reported (the STARTING
        # record) must not move, and the wait for a start slot is paid, as in the simulator.
        set_seconds(inst.ready_at, started.ready_at)
        self.observed_inits.record(model, config.kind, started.ready_at - commanded)
        inst.address = started.address
        inst.state = common_pb2.INSTANCE_STATE_READY
        for name, took in started.phases.items():
            phase = inst.init_phases.add(name=name)
            phase.duration.FromNanoseconds(round(took * 1e9))
        self.instances[instance_id] = inst
        await self.store.put_instance(inst)
        self.spawn(self._watch(instance_id))
        logs.event(
            log,
            "instance ready",
            instance=instance_id,
            model=model,
            config=config.name,
            init_s=round(started.ready_at - started.spawned_at, 3),
        )
        return inst

    # --- on demand -----------------------------------------------------------------------
    async def ensure(self, app: str, function: str, model: str) -> tuple[common_pb2.Instance, bool]:
        """An instance of `function` for an arrival that found none ready: a ready one, the
        one starting, else one started now (`smiless.policy.ondemand`); and whether it had to
        start. Concurrent callers join the one start."""
        key = (app, function)
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            mine = [i for i in self.instances.values() if (i.app, i.function) == key]
            for inst in mine:
                if inst.state == common_pb2.INSTANCE_STATE_READY:
                    return inst, False
            config, batch = await self._shape_for(app, function)
            # The request carries no queue length: the caller's own request is the one queued
            # that is known, and each instance starting takes at least one in its next round.
            coming = sum(max(1, i.batch) for i in mine)
            if on_demand_count(1, coming, batch) == 0:
                waited = await self._await_start(mine[0].id)
                if waited is not None:
                    return waited, True
            await self._make_room()
            return await self.start(app, function, model, config, batch, "on demand"), True

    async def _shape_for(self, app: str, function: str) -> tuple[HardwareConfig, int]:
        """(config, batch) of an on-demand start: the stored plan's (`on_demand_shape`), on
        the configs this host can run; with no plan, the default config and an unknown batch."""
        plan = await self.store.get_plan(app)
        for fp in plan.functions if plan is not None else []:
            if fp.function != function:
                continue
            shape = on_demand_shape(fp.instance_config, fp.config, fp.batch_size, self._runnable)
            if shape is not None:
                return self.catalogue[shape[0]], shape[1]
        return self.catalogue[self.settings.default_config], 0

    def _runnable(self, name: str) -> bool:
        cfg = self.catalogue.get(name)
        return cfg is not None and cfg.runnable

    async def _make_room(self) -> None:
        """With no room, stop the instance idle the longest so an arrival can be served; with
        none idle the start goes ahead over the limit (an arrival is never refused for
        capacity) and says so."""
        if self.room() > 0:
            return
        ready = [i for i in self.instances.values() if i.state == common_pb2.INSTANCE_STATE_READY]
        views = await asyncio.gather(*(self.view(i) for i in ready))
        idle = [v for v, _ in views if v.idle_since is not None]
        if not idle:
            logs.event(log, "over capacity", logging.WARNING, instances=len(self.instances))
            return
        victim = min(idle, key=lambda v: v.idle_since or 0.0)
        await self.stop(victim.id, "evicted for an arrival")

    async def _await_start(self, instance_id: str) -> common_pb2.Instance | None:
        """Wait for the start of `instance_id`; None when it did not come up."""
        while (inst := self.instances.get(instance_id)) is not None:
            if inst.state == common_pb2.INSTANCE_STATE_READY:
                return inst
            await asyncio.sleep(0.05)
        return None

    # --- usage ---------------------------------------------------------------------------
    async def views(self, app: str) -> list[tuple[InstanceView, int]]:
        """The app's live instances with their usage and the requests each holds (queued or
        being served), read from their workers."""
        return list(await asyncio.gather(*(self.view(i) for i in self.of_app(app))))

    async def view(self, inst: common_pb2.Instance) -> tuple[InstanceView, int]:
        started = seconds(inst.started_at) or 0.0
        cfg = self.catalogue.get(inst.config)
        price = cfg.price_per_second if cfg is not None else None

        def view(ready: bool, idle: float | None, served: int) -> InstanceView:
            return InstanceView(
                inst.id, inst.function, inst.config, ready, started, idle, served, inst.batch or None, price
            )

        if inst.state != common_pb2.INSTANCE_STATE_READY:
            return view(False, None, 0), 0
        try:
            usage = await self._stub(inst.address).Describe(
                worker_pb2.DescribeRequest(), timeout=DESCRIBE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:  # unreachable: the exit watch decides, never stop blind
            return view(True, None, inst.served), 0
        inst.served = usage.served
        idle = seconds(usage.idle_since) if usage.in_flight == 0 else None
        return view(True, idle, usage.served), usage.in_flight

    def _stub(self, address: str) -> worker_pb2_grpc.WorkerStub:
        stub = self.stubs.get(address)
        if stub is None:
            ch = grpc.aio.insecure_channel(address, options=grpc_options(self.settings))
            self.channels[address] = ch
            stub = self.stubs[address] = worker_pb2_grpc.WorkerStub(ch)
        return stub
