"""Optimizer service. It owns the instances: nothing else starts or stops workers.

It plans (`Plan`, `ExplainPlan`: profiles from Redis, the forecast from the predictor,
the fast path search over the configs this host can run), serves `EnsureInstance` (one
instance per function, started on demand on the planned config, else the default one)
and `ListInstances`, and records every instance's lifetime. Enforcing plans ahead of
arrivals (the controller) is being built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid

import grpc

from smiless import appspec, logs, profiles
from smiless.backends import make_backend
from smiless.backends.base import BackendError, WorkerBackend
from smiless.catalogue import HardwareConfig, load_catalogue, mark_runnable
from smiless.config import Settings
from smiless.policy.costmodel import Forecast
from smiless.policy.profile import FunctionProfile
from smiless.policy.search import Plan, explain, fast_plan
from smiless.protoutil import set_seconds
from smiless.server import RpcError, rpc
from smiless.services.common import require_app, seconds
from smiless.services.optimizer.planning import explanation_to_proto, plan_to_proto
from smiless.store import Store
from smiless.v1 import common_pb2, optimizer_pb2, optimizer_pb2_grpc, predictor_pb2, predictor_pb2_grpc

log = logging.getLogger("smiless.optimizer")
LIVE = (common_pb2.INSTANCE_STATE_STARTING, common_pb2.INSTANCE_STATE_READY)


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
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.watchers: set[asyncio.Task[None]] = set()
        self.plans: dict[str, Plan] = {}
        self.predictor: predictor_pb2_grpc.PredictorStub | None = None

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

    def _watch_later(self, instance_id: str) -> None:
        task = asyncio.create_task(self._watch(instance_id))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def stop(self) -> None:
        for w in self.watchers:
            w.cancel()
        await asyncio.gather(*(self._stop_instance(i) for i in list(self.instances)), return_exceptions=True)
        await self.backend.close()

    # --- instances -----------------------------------------------------------------------
    async def _stop_instance(self, instance_id: str) -> None:
        inst = self.instances.pop(instance_id, None)
        await self.backend.stop(instance_id)
        if inst is not None:
            inst.state = common_pb2.INSTANCE_STATE_STOPPED
            set_seconds(inst.stopped_at, time.time())
            await self.store.put_instance(inst)
            logs.event(log, "instance stopped", instance=instance_id, function=inst.function)

    async def _watch(self, instance_id: str) -> None:
        """Mark an instance FAILED as soon as its worker exits on its own."""
        code = await self.backend.wait_exit(instance_id)
        inst = self.instances.pop(instance_id, None)
        if inst is None:
            return
        inst.state = common_pb2.INSTANCE_STATE_FAILED
        set_seconds(inst.stopped_at, time.time())
        await self.backend.stop(instance_id)
        with contextlib.suppress(Exception):
            await self.store.put_instance(inst)
        logs.event(log, "instance failed", logging.WARNING, instance=instance_id, exit_code=code)

    async def _start_instance(
        self, app: str, function: str, model: str, config: HardwareConfig
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
        )
        set_seconds(inst.started_at, time.time())
        await self.store.put_instance(inst)
        try:
            started = await self.backend.start(instance_id, model, config)
        except BackendError as exc:
            inst.state = common_pb2.INSTANCE_STATE_FAILED
            set_seconds(inst.stopped_at, time.time())
            await self.store.put_instance(inst)
            raise RpcError(grpc.StatusCode.UNAVAILABLE, f"instance of {function}: {exc}") from exc
        set_seconds(inst.started_at, started.spawned_at)
        set_seconds(inst.ready_at, started.ready_at)
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

    async def _config_for(self, app: str, function: str) -> HardwareConfig:
        """The planned config of a function, or the default one when there is no plan."""
        plan = await self.store.get_plan(app)
        for fp in plan.functions if plan is not None else []:
            cfg = self.catalogue.get(fp.config)
            if fp.function == function and cfg is not None and cfg.runnable:
                return cfg
        return self.catalogue[self.settings.default_config]

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
            for inst in self.instances.values():
                if (inst.app, inst.function) == key and inst.state == common_pb2.INSTANCE_STATE_READY:
                    return optimizer_pb2.EnsureInstanceResponse(instance=inst, started=False)
            config = await self._config_for(request.app, request.function)
            inst = await self._start_instance(request.app, request.function, models[request.function], config)
            return optimizer_pb2.EnsureInstanceResponse(instance=inst, started=True)

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
            out[f.name] = {kind: profiles.from_proto(p) for kind, p in stored.items()}
        if missing:
            raise RpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"profiles: no profile for {', '.join(missing)}; run `smiless profile MODEL` first",
            )
        return out

    async def _forecast(self, app: str) -> tuple[Forecast, float]:
        """The predictor's forecast and the time it counts from (the last arrival)."""
        if self.predictor is None:
            channel = grpc.aio.insecure_channel(self.settings.predictor_addr)
            self.predictor = predictor_pb2_grpc.PredictorStub(channel)
        try:
            pred = await self.predictor.Predict(predictor_pb2.PredictRequest(app=app), timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, f"prediction for {app!r}: {exc.details()}") from exc
        it_s = pred.next_it.ToNanoseconds() / 1e9
        keep = pred.keep_alive.ToNanoseconds() / 1e9
        forecast = Forecast(it_s if it_s > 0 else math.inf, max(1, pred.count), keep)
        since = seconds(pred.last_arrival)
        return forecast, since if since is not None else time.time()

    async def _plan(self, app: str) -> tuple[optimizer_pb2.AppPlan, Plan]:
        stored = await require_app(self.store, app)
        spec = appspec.validate(appspec.from_proto(stored.spec))
        found = await self._profiles(spec)
        forecast, since = await self._forecast(app)
        runnable = {n: c for n, c in self.catalogue.items() if c.runnable}
        plan = fast_plan(
            spec.function_names,
            spec.edges,
            spec.sla_s,
            found,
            runnable,
            forecast,
            since,
            top_k=self.settings.plan_top_k,
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
        msg, _ = await self._plan(request.app)
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
        msg, plan = await self._plan(request.app)
        return optimizer_pb2.ExplainPlanResponse(plan=msg, functions=explanation_to_proto(explain(plan), msg))
