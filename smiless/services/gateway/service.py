"""Gateway service: app management, DAG invocation, status and cost reports."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smiless import accounting, appspec, logs, tensors, zoo
from smiless.config import SERVICE_NAMES, Settings
from smiless.protoutil import set_seconds
from smiless.server import RpcError, grpc_options, rpc
from smiless.services.common import require_app, seconds
from smiless.services.gateway.executor import StageFailed, StageResult, execute
from smiless.services.gateway.recorder import Recorder
from smiless.store import InvocationRecord, StageLatency, Store
from smiless.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    optimizer_pb2,
    optimizer_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

log = logging.getLogger("smiless.gateway")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)


class Router:
    """Finds a ready instance for a stage: the local cache first, else the optimizer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instances: dict[tuple[str, str], common_pb2.Instance] = {}
        self.channels: dict[str, grpc.aio.Channel] = {}

    @property
    def optimizer(self) -> optimizer_pb2_grpc.OptimizerStub:
        # Channels are made lazily: a grpc.aio channel belongs to the loop it was made on.
        return optimizer_pb2_grpc.OptimizerStub(self.channel(self.settings.optimizer_addr))

    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self.channels.get(address)
        if ch is None:
            ch = grpc.aio.insecure_channel(address, options=grpc_options(self.settings))
            self.channels[address] = ch
        return ch

    async def acquire(self, app: str, function: str, timeout: float) -> tuple[common_pb2.Instance, bool]:
        """Return (instance, cold): cold when the stage had to wait for an instance."""
        inst = self.instances.get((app, function))
        if inst is not None:
            return inst, False
        req = optimizer_pb2.EnsureInstanceRequest(app=app, function=function)
        set_seconds(req.deadline, timeout)
        try:
            resp = await self.optimizer.EnsureInstance(req, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise RpcError(code, f"stage {function}: no instance ready before the deadline") from exc
            raise RpcError(
                grpc.StatusCode.UNAVAILABLE, f"stage {function}: optimizer: {exc.details()}"
            ) from exc
        self.instances[(app, function)] = resp.instance
        return resp.instance, resp.started

    def forget(self, instance: common_pb2.Instance) -> None:
        key = (instance.app, instance.function)
        if self.instances.get(key, None) is not None and self.instances[key].id == instance.id:
            del self.instances[key]

    def forget_app(self, app: str) -> None:
        for key in [k for k in self.instances if k[0] == app]:
            del self.instances[key]

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    name = "gateway"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.router = Router(settings)
        self.recorder = Recorder(store, settings.arrival_retention_s, settings.invocation_retention)
        self.apps: dict[str, tuple[float, appspec.AppSpec]] = {}

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        gateway_pb2_grpc.add_GatewayServicer_to_server(self, server)
        return ["smiless.v1.Gateway"]

    async def start(self) -> None:
        self.recorder.start()

    async def stop(self) -> None:
        await self.recorder.stop()
        await self.router.close()

    # --- apps ----------------------------------------------------------------------------
    @rpc
    async def RegisterApp(
        self, request: gateway_pb2.RegisterAppRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RegisterAppResponse:
        if not request.HasField("app"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "app: required")
        spec = appspec.validate(appspec.from_proto(request.app))
        app = gateway_pb2.App(spec=appspec.to_proto(spec), version=1)
        app.registered_at.GetCurrentTime()
        if request.replace:
            old = await self.store.get_app(spec.name)
            app.version = old.version + 1 if old else 1
            await self.store.put_app(app)
        elif not await self.store.create_app(app):
            raise RpcError(
                grpc.StatusCode.ALREADY_EXISTS, f"app.name: an app named {spec.name!r} exists (use replace)"
            )
        self.apps.pop(spec.name, None)
        self.router.forget_app(spec.name)
        logs.event(log, "app registered", app=spec.name, functions=len(spec.functions), version=app.version)
        warnings = [f"no plan yet: instances start on demand on {self.settings.default_config}"]
        return gateway_pb2.RegisterAppResponse(app=app, warnings=warnings)

    @rpc
    async def DeleteApp(
        self, request: gateway_pb2.DeleteAppRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.DeleteAppResponse:
        if not request.name:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "name: required")
        if not await self.store.delete_app(request.name):
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"name: no app named {request.name!r}")
        self.apps.pop(request.name, None)
        self.router.forget_app(request.name)
        logs.event(log, "app deleted", app=request.name)
        return gateway_pb2.DeleteAppResponse()

    @rpc
    async def ListApps(
        self, request: gateway_pb2.ListAppsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ListAppsResponse:
        return gateway_pb2.ListAppsResponse(apps=await self.store.list_apps())

    @rpc
    async def GetApp(
        self, request: gateway_pb2.GetAppRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetAppResponse:
        if not request.name:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "name: required")
        return gateway_pb2.GetAppResponse(app=await require_app(self.store, request.name))

    async def _spec(self, name: str) -> appspec.AppSpec:
        """The app's spec, cached for a second so Invoke rarely touches Redis."""
        cached = self.apps.get(name)
        if cached and time.monotonic() - cached[0] < 1.0:
            return cached[1]
        app = await require_app(self.store, name)
        spec = appspec.validate(appspec.from_proto(app.spec))
        self.apps[name] = (time.monotonic(), spec)
        return spec

    # --- invoke --------------------------------------------------------------------------
    async def _stage(
        self, app: str, spec: appspec.AppSpec, function: str, x: object, deadline: float
    ) -> StageResult:
        start = time.monotonic()
        cold = False
        for attempt in range(2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, f"stage {function}: ran out of time")
            inst, was_cold = await self.router.acquire(app, function, remaining)
            cold = cold or was_cold
            got = time.monotonic()
            stub = worker_pb2_grpc.WorkerStub(self.router.channel(inst.address))
            try:
                req = worker_pb2.InferRequest(inputs=[tensors.to_proto(x)])  # type: ignore[arg-type]
                resp = await stub.Infer(
                    req,
                    timeout=max(0.001, deadline - time.monotonic()),
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise RpcError(exc.code(), f"stage {function}: ran out of time") from exc
                if exc.code() in RETRYABLE and attempt == 0:
                    logs.event(
                        log,
                        "instance failed; retrying on another",
                        logging.WARNING,
                        instance=inst.id,
                        error=exc.details(),
                    )
                    self.router.forget(inst)
                    continue
                raise RpcError(
                    grpc.StatusCode.UNAVAILABLE if exc.code() in RETRYABLE else exc.code(),
                    f"stage {function}: {exc.details()}",
                ) from exc
            end = time.monotonic()
            if not was_cold:
                self.recorder.stage(StageLatency(inst.model, inst.config, len(req.inputs), end - got))
            return StageResult(
                output=tensors.from_proto(resp.outputs[0]),
                instance_id=inst.id,
                config=inst.config,
                start=start,
                end=end,
                queueing=got - start,
                inference=resp.inference_time.ToNanoseconds() / 1e9,
                cold=cold,
            )
        raise AssertionError("unreachable")

    @rpc
    async def Invoke(
        self, request: gateway_pb2.InvokeRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.InvokeResponse:
        received_wall, received = time.time(), time.monotonic()
        spec = await self._spec(request.app)
        if not request.HasField("input"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "input: required")
        try:
            x = tensors.from_proto(request.input)
        except tensors.TensorError as exc:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input: {exc}") from exc
        entry_model = zoo.MODELS[spec.model_of(spec.entry)]
        why = entry_model.input.check(x)
        if why:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT, f"input: {why} (entry {spec.entry}: {entry_model.name})"
            )
        request_id = request.request_id or uuid.uuid4().hex
        self.recorder.arrival(spec.name, received_wall)
        budget = self.settings.invoke_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:
            budget = min(budget, remaining)
        deadline = received + budget

        async def call(function: str, inp: object) -> StageResult:
            return await self._stage(spec.name, spec, function, inp, deadline)

        try:
            results = await execute(spec, x, call)
        except StageFailed as exc:
            self._record(spec, received_wall, time.monotonic() - received, False, request_id, failed=True)
            if isinstance(exc.cause, RpcError):
                raise exc.cause from exc
            raise RpcError(grpc.StatusCode.INTERNAL, str(exc)) from exc
        latency = time.monotonic() - received
        cold = any(r.cold for r in results.values())
        sla_met = latency <= spec.sla_s
        self._record(spec, received_wall, latency, cold, request_id, sla_met=sla_met)
        resp = gateway_pb2.InvokeResponse(request_id=request_id, sla_met=sla_met, cold=cold)
        set_seconds(resp.latency, latency)
        for leaf in spec.leaves:
            resp.outputs[leaf].CopyFrom(tensors.to_proto(results[leaf].output))
        for function in spec.topological_order():
            r = results[function]
            st = resp.stages.add(
                function=function,
                instance_id=r.instance_id,
                config=r.config,
                cold=r.cold,
                batch_size=r.batch_size,
            )
            set_seconds(st.start_offset, r.start - received)
            set_seconds(st.latency, r.end - r.start)
            set_seconds(st.queueing, r.queueing)
            set_seconds(st.inference, r.inference)
        return resp

    def _record(
        self,
        spec: appspec.AppSpec,
        at: float,
        latency: float,
        cold: bool,
        request_id: str,
        sla_met: bool = False,
        failed: bool = False,
    ) -> None:
        self.recorder.invocation(
            spec.name, InvocationRecord(at, latency * 1000.0, sla_met and not failed, cold, request_id)
        )

    # --- reports -------------------------------------------------------------------------
    async def _service_status(self, name: str) -> gateway_pb2.ServiceStatus:
        address = self.settings.service_addr(name)
        status = gateway_pb2.ServiceStatus(name=name, address=address)
        if name == "gateway":
            status.status = gateway_pb2.SERVING_STATUS_SERVING
            return status
        try:
            resp = await health_pb2_grpc.HealthStub(self.router.channel(address)).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
            status.status = (
                gateway_pb2.SERVING_STATUS_SERVING
                if resp.status == health_pb2.HealthCheckResponse.SERVING
                else gateway_pb2.SERVING_STATUS_NOT_SERVING
            )
        except grpc.aio.AioRpcError:
            status.status = gateway_pb2.SERVING_STATUS_UNREACHABLE
        return status

    @rpc
    async def GetStatus(
        self, request: gateway_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetStatusResponse:
        services = await asyncio.gather(*(self._service_status(n) for n in SERVICE_NAMES))
        resp = gateway_pb2.GetStatusResponse(services=services)
        apps = [await require_app(self.store, request.app)] if request.app else await self.store.list_apps()
        instances = await self.store.list_instances()
        for app in apps:
            records = await self.store.invocations(app.spec.name)
            latencies = [r.latency_ms / 1000.0 for r in records]
            st = resp.apps.add(
                name=app.spec.name,
                functions=len(app.spec.functions),
                invocations=len(records),
                sla_violations=sum(not r.sla_met for r in records),
                instances=[i for i in instances if i.app == app.spec.name],
            )
            st.sla.CopyFrom(app.spec.sla)
            set_seconds(st.p50_latency, accounting.percentile(latencies, 50))
            set_seconds(st.p99_latency, accounting.percentile(latencies, 99))
        resp.degraded = (
            any(s.status != gateway_pb2.SERVING_STATUS_SERVING for s in services)
            or not self.recorder.healthy
            or self.recorder.dropped > 0
        )
        return resp

    @rpc
    async def GetCostReport(
        self, request: gateway_pb2.GetCostReportRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetCostReportResponse:
        now = time.time()
        start = seconds(request.start) or 0.0
        end = seconds(request.end) or now
        if end < start:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "end: before start")
        apps = [await require_app(self.store, request.app)] if request.app else await self.store.list_apps()
        lives = [
            accounting.Lifetime(
                i.id,
                i.app,
                i.function,
                i.config,
                i.price_per_hour,
                i.started_at.ToNanoseconds() / 1e9,
                seconds(i.stopped_at),
            )
            for i in await self.store.lifetimes()
        ]
        resp = gateway_pb2.GetCostReportResponse(total_cost=0.0)
        resp.start.FromNanoseconds(round(start * 1e9))
        resp.end.FromNanoseconds(round(end * 1e9))
        for app in apps:
            name = app.spec.name
            records = await self.store.invocations(name, start, end)
            ac = resp.apps.add(
                app=name, invocations=len(records), sla_violations=sum(not r.sla_met for r in records)
            )
            for fn in app.spec.functions:
                mine = [x for x in lives if x.app == name and x.function == fn.name]
                fc = ac.functions.add(
                    function=fn.name,
                    invocations=len(records),
                    cold_starts=sum(1 for x in mine if start <= x.start <= end),
                )
                for x in mine:
                    secs = accounting.instance_seconds(x, start, end, now)
                    fc.instance_seconds[x.config] = fc.instance_seconds[x.config] + secs
                fc.cost = accounting.total_cost(mine, start, end, now)
                ac.cost += fc.cost
            ac.cost_per_1000 = ac.cost / ac.invocations * 1000.0 if ac.invocations else 0.0
            resp.total_cost += ac.cost
        return resp
