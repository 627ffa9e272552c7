"""Optimizer service. It owns the instances: nothing else starts or stops workers.

It plans (`Plan`, `ExplainPlan`: profiles from Redis, the forecast from the predictor,
the fast path search over the configs this host can run), enforces the plans ahead of
arrivals (the controller, `controller.py`: pre-warm, keep alive, stop, scale), serves
`EnsureInstance` (an arrival that finds no ready instance: one is started on demand on the
planned config, else the default one) and `ListInstances`, and records every instance's
lifetime with why it started and stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import grpc

from smiless import appspec, logs, profiles
from smiless.aio import stop_task
from smiless.backends import make_backend
from smiless.backends.base import BackendError, ModelError, WorkerBackend
from smiless.catalogue import HardwareConfig, load_catalogue, mark_runnable
from smiless.config import Settings
from smiless.policy.costmodel import Forecast
from smiless.policy.profile import FunctionProfile, ObservedInits
from smiless.policy.search import Plan, explain, sla_aware_plan
from smiless.protoutil import set_seconds
from smiless.server import RpcError, rpc
from smiless.services.common import require_app, seconds
from smiless.services.optimizer.controller import Controller
from smiless.services.optimizer.planning import explanation_to_proto, forecast_from_proto, plan_to_proto
from smiless.store import Store
from smiless.v1 import common_pb2, optimizer_pb2, optimizer_pb2_grpc, predictor_pb2, predictor_pb2_grpc

log = logging.getLogger("smiless.optimizer")
LIVE = (common_pb2.INSTANCE_STATE_STARTING, common_pb2.INSTANCE_STATE_READY)
DRAIN_S = 0.2
"""A stopping instance is shown DRAINING this long first, so routers stop picking it."""


class OptimizerService(optimizer_pb2_grpc.OptimizerServicer):
    name = "optimizer"

    def __init__(self, settings: Settings, store: Store, backend: WorkerBackend | None = None) -> None:
        self.settings = settings
        self.store = store
        # Plans must be executable here: configs this host cannot run are not candidates.
        self.catalogue = mark_runnable(
            load_catalogue(settings.catalogue), os.cpu_count() or 1, gpu_available=False
        )
        if settings.default_config not in self.catalogue:
            raise SystemExit(
                f"smiless optimizer: default_config {settings.default_config!r} is not in the catalogue"
            )
        self.backend: WorkerBackend = backend or make_backend(settings)
        self.instances: dict[str, common_pb2.Instance] = {}
        """Live instances (STARTING and READY) this optimizer runs."""
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.tasks: set[asyncio.Task[object]] = set()
        self.plans: dict[str, Plan] = {}
        self.predictor: predictor_pb2_grpc.PredictorStub | None = None
        self.controller = Controller(self)
        self.start_slots = asyncio.Semaphore(settings.max_parallel_starts)
        self.observed_inits = ObservedInits()
        """This host's recent starts, which widen the profiles' inits (`ObservedInits`)."""

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        optimizer_pb2_grpc.add_OptimizerServicer_to_server(self, server)
        return ["smiless.v1.Optimizer"]

    async def start(self) -> None:
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
                self._watch_later(inst.id)
                logs.event(log, "instance re-adopted", instance=inst.id, address=inst.address)
            else:
                inst.state = common_pb2.INSTANCE_STATE_STOPPED
                set_seconds(inst.stopped_at, time.time())
            await self.store.put_instance(inst)
        for orphan in set(alive) - known:
            await self.backend.stop(orphan)
            logs.event(log, "orphan worker removed", instance=orphan)
        if self.settings.controller:
            self.spawn(self.controller.run())

    def _watch_later(self, instance_id: str) -> None:
        self.spawn(self._watch(instance_id))

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run `coro` in the background; its failure is logged, never lost."""
        task: asyncio.Task[object] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[object]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logs.event(log, "background task failed", logging.WARNING, error=str(exc))

    async def stop(self) -> None:
        await asyncio.gather(*(stop_task(t) for t in list(self.tasks)))
        await asyncio.gather(
            *(self.stop_instance(i, "optimizer stopped", drain=False) for i in list(self.instances)),
            return_exceptions=True,
        )
        await self.controller.close()
        await self.backend.close()

    # --- instances -----------------------------------------------------------------------
    async def stop_instance(self, instance_id: str, reason: str, *, drain: bool = True) -> None:
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
        await self._start_instance(app, function, models[function], cfg, batch, reason)

    async def _start_instance(
        self, app: str, function: str, model: str, config: HardwareConfig, batch: int, reason: str
    ) -> common_pb2.Instance:
        """Start one instance; it is in `self.instances` (STARTING) from the first moment, so
        the controller counts it and `EnsureInstance` waits for it instead of starting more.
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
        self._watch_later(instance_id)
        logs.event(
            log,
            "instance ready",
            instance=instance_id,
            model=model,
            config=config.name,
            init_s=round(started.ready_at - started.spawned_at, 3),
        )
        return inst

    async def _shape_for(self, app: str, function: str) -> tuple[HardwareConfig, int]:
        """(config, batch) of an on-demand start, as the simulator's: the plan's instance
        config and batch; its config serving one at a time when this host cannot run the
        instance config; with no plan, the default config and an unknown batch (0)."""
        plan = await self.store.get_plan(app)
        for fp in plan.functions if plan is not None else []:
            if fp.function != function:
                continue
            shaped = fp.instance_config or fp.config
            alone = fp.batch_size if shaped == fp.config else 1
            for name, batch in ((shaped, fp.batch_size), (fp.config, alone)):
                cfg = self.catalogue.get(name)
                if cfg is not None and cfg.runnable:
                    return cfg, max(1, batch)
        return self.catalogue[self.settings.default_config], 0

    @rpc
    async def EnsureInstance(
        self, request: optimizer_pb2.EnsureInstanceRequest, context: grpc.aio.ServicerContext
    ) -> optimizer_pb2.EnsureInstanceResponse:
        app = await require_app(self.store, request.app)
        models = {f.name: f.model for f in app.spec.functions}
        if request.function not in models:
            raise RpcError(
                grpc.StatusCode.NOT_FOUND,
                f"function: app {request.app!r} has no function {request.function!r}",
            )
        key = (request.app, request.function)
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent callers join the one start
            mine = [i for i in self.instances.values() if (i.app, i.function) == key]
            for inst in mine:
                if inst.state == common_pb2.INSTANCE_STATE_READY:
                    return optimizer_pb2.EnsureInstanceResponse(instance=inst, started=False)
            if mine:  # a start (pre-warm, or another caller's) is under way: wait for it
                waited = await self._await_start(mine[0].id)
                if waited is not None:
                    return optimizer_pb2.EnsureInstanceResponse(instance=waited, started=True)
            config, batch = await self._shape_for(request.app, request.function)
            await self._make_room()
            inst = await self._start_instance(
                request.app, request.function, models[request.function], config, batch, "on demand"
            )
            return optimizer_pb2.EnsureInstanceResponse(instance=inst, started=True)

    async def _make_room(self) -> None:
        """At `max_instances`, stop the instance idle the longest so an arrival can be
        served; with none idle the start goes ahead over the limit (an arrival is never
        refused for capacity) and says so."""
        if len(self.instances) < self.settings.max_instances:
            return
        ready = [i for i in self.instances.values() if i.state == common_pb2.INSTANCE_STATE_READY]
        views = await asyncio.gather(*(self.controller.view(i) for i in ready))
        idle = [v for v, _ in views if v.idle_since is not None]
        if not idle:
            logs.event(log, "over capacity", logging.WARNING, instances=len(self.instances))
            return
        victim = min(idle, key=lambda v: v.idle_since or 0.0)
        await self.stop_instance(victim.id, "evicted for an arrival")

    async def _await_start(self, instance_id: str) -> common_pb2.Instance | None:
        """Wait for the start of `instance_id`; None when it did not come up."""
        while (inst := self.instances.get(instance_id)) is not None:
            if inst.state == common_pb2.INSTANCE_STATE_READY:
                return inst
            await asyncio.sleep(0.05)
        return None

    @rpc
    async def ListInstances(
        self, request: optimizer_pb2.ListInstancesRequest, context: grpc.aio.ServicerContext
    ) -> optimizer_pb2.ListInstancesResponse:
        found = [
            i
            for i in await self.store.list_instances()
            if (not request.app or i.app == request.app)
            and (not request.function or i.function == request.function)
        ]
        return optimizer_pb2.ListInstancesResponse(instances=sorted(found, key=lambda i: i.id))

    # --- plans ---------------------------------------------------------------------------
    async def _profiles(self, spec: appspec.AppSpec) -> dict[str, dict[str, FunctionProfile]]:
        """Every function's stored profiles; FAILED_PRECONDITION naming the unprofiled ones."""
        out: dict[str, dict[str, FunctionProfile]] = {}
        missing: list[str] = []
        for f in spec.functions:
            stored = await self.store.get_profiles(f.model)
            if not stored:
                missing.append(f"{f.name} ({f.model})")
                continue
            out[f.name] = {
                kind: self.observed_inits.widen(profiles.from_proto(p)) for kind, p in stored.items()
            }
        if missing:
            raise RpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"profiles: no profile for {', '.join(missing)}; run `smiless profile MODEL` first",
            )
        return out

    async def predict(self, app: str) -> predictor_pb2.PredictResponse:
        """The predictor's latest forecast for `app` (UNAVAILABLE when it cannot answer)."""
        if self.predictor is None:
            channel = grpc.aio.insecure_channel(self.settings.predictor_addr)
            self.predictor = predictor_pb2_grpc.PredictorStub(channel)
        try:
            pred: predictor_pb2.PredictResponse = await self.predictor.Predict(
                predictor_pb2.PredictRequest(app=app), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, f"prediction for {app!r}: {exc.details()}") from exc
        return pred

    @staticmethod
    def _forecast(pred: predictor_pb2.PredictResponse) -> tuple[Forecast, float]:
        """The planner's forecast and the time it counts from (the last arrival)."""
        it_s = pred.next_it.ToNanoseconds() / 1e9
        keep = pred.keep_alive.ToNanoseconds() / 1e9
        # (a predictor older than `burst` leaves it unset: the whole slot, as it counts one)
        burst = (pred.burst if pred.HasField("burst") else pred.slot).ToNanoseconds() / 1e9
        median = pred.next_it_median.ToNanoseconds() / 1e9 if pred.HasField("next_it_median") else None
        forecast = Forecast(
            it_s if it_s > 0 else math.inf, max(1, pred.count), keep, burst, median if median else None
        )
        since = seconds(pred.last_arrival)
        return forecast, since if since is not None else time.time()

    async def plan_app(
        self, app: str, pred: predictor_pb2.PredictResponse | None = None
    ) -> tuple[optimizer_pb2.AppPlan, Plan]:
        """Plan `app` for `pred` (asked of the predictor when not given) and store the plan."""
        stored = await require_app(self.store, app)
        spec = appspec.validate(appspec.from_proto(stored.spec))
        found = await self._profiles(spec)
        forecast, since = forecast_from_proto(pred if pred is not None else await self.predict(app))
        runnable = {n: c for n, c in self.catalogue.items() if c.runnable}
        plan = sla_aware_plan(
            spec.function_names,
            spec.edges,
            spec.sla_s,
            found,
            runnable,
            forecast,
            since,
            top_k=self.settings.plan_top_k,
            headroom=self.settings.plan_headroom,
        )
        msg = plan_to_proto(app, plan, time.time())
        await self.store.put_plan(msg)
        self.plans[app] = plan
        logs.event(
            log,
            "planned",
            app=app,
            feasible=plan.feasible,
            cost=plan.cost,
            latency_s=round(plan.latency_s, 4),
            configs=plan.configs,
        )
        return msg, plan

    @rpc
    async def Plan(
        self, request: optimizer_pb2.PlanRequest, context: grpc.aio.ServicerContext
    ) -> optimizer_pb2.PlanResponse:
        msg, _ = await self.plan_app(request.app)
        self.controller.kick.set()  # enforce the new plan now
        return optimizer_pb2.PlanResponse(plan=msg)

    @rpc
    async def GetPlan(
        self, request: optimizer_pb2.GetPlanRequest, context: grpc.aio.ServicerContext
    ) -> optimizer_pb2.GetPlanResponse:
        await require_app(self.store, request.app)
        plan = await self.store.get_plan(request.app)
        if plan is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"app: no plan stored for {request.app!r}")
        return optimizer_pb2.GetPlanResponse(plan=plan)

    @rpc
    async def ExplainPlan(
        self, request: optimizer_pb2.ExplainPlanRequest, context: grpc.aio.ServicerContext
    ) -> optimizer_pb2.ExplainPlanResponse:
        """Explains a fresh plan: the chosen option per function and every rejected one."""
        msg, plan = await self.plan_app(request.app)
        return optimizer_pb2.ExplainPlanResponse(plan=msg, functions=explanation_to_proto(explain(plan), msg))
