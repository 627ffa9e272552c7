"""Gateway service: app management, DAG invocation, status and cost reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smiless import appspec, logs, metrics
from smiless.config import SERVICE_NAMES, Settings
from smiless.server import RpcError, rpc
from smiless.services.common import require_app
from smiless.services.gateway import reports
from smiless.services.gateway.datapath import DataPath, new_request_id
from smiless.services.gateway.recorder import Recorder
from smiless.store import Store, StoreError
from smiless.v1 import gateway_pb2, gateway_pb2_grpc, optimizer_pb2

log = logging.getLogger("smiless.gateway")


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    name = "gateway"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.recorder = Recorder(
            store,
            settings.arrival_retention_s,
            settings.invocation_retention,
            max_buffer=settings.record_buffer,
        )
        self.datapath = DataPath(settings, store, self.recorder)

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        gateway_pb2_grpc.add_GatewayServicer_to_server(self, server)
        return ["smiless.v1.Gateway"]

    async def start(self) -> None:
        metrics.watch_recorder(self.recorder)
        self.recorder.start()
        await self.datapath.start()

    async def stop(self) -> None:
        await self.datapath.stop()
        await self.recorder.stop()

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
        self.datapath.forget_app(spec.name)
        logs.event(log, "app registered", app=spec.name, functions=len(spec.functions), version=app.version)
        return gateway_pb2.RegisterAppResponse(app=app, warnings=await self._plan_warnings(spec.name))

    async def _plan_warnings(self, app: str) -> list[str]:
        """Ask the optimizer for a first plan, so registration can say when the SLA is out of
        reach even on the fastest configs, or why there is no plan yet."""
        no_plan = f"instances start on demand on {self.settings.default_config}"
        try:
            resp = await self.datapath.router.optimizer.Plan(optimizer_pb2.PlanRequest(app=app), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return [f"no plan yet: {exc.details()}; {no_plan}"]
        if not resp.plan.feasible:
            return [f"sla_s: {resp.plan.reason}"]
        return []

    @rpc
    async def DeleteApp(
        self, request: gateway_pb2.DeleteAppRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.DeleteAppResponse:
        if not request.name:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "name: required")
        if not await self.store.delete_app(request.name):
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"name: no app named {request.name!r}")
        self.datapath.forget_app(request.name)
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

    # --- invoke (the data path: datapath.py) --------------------------------------------
    @rpc
    async def Invoke(
        self, request: gateway_pb2.InvokeRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.InvokeResponse:
        return await self.datapath.invoke(request, context.time_remaining())

    async def InvokeStream(
        self,
        request_iterator: AsyncIterator[gateway_pb2.InvokeStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[gateway_pb2.InvokeStreamResponse]:
        """Run the stream's invocations concurrently (at most stream_max_in_flight at once:
        reading pauses beyond) and answer each as it completes; a failure answers that
        invocation with its status and the stream goes on."""
        answers: asyncio.Queue[gateway_pb2.InvokeStreamResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self.settings.stream_max_in_flight)
        running: set[asyncio.Task[None]] = set()
        stream_end = time.monotonic() + (context.time_remaining() or float("inf"))

        async def one(index: int, req: gateway_pb2.InvokeRequest) -> None:
            rid = req.request_id or new_request_id()
            out = gateway_pb2.InvokeStreamResponse(index=index, request_id=rid)
            try:
                left = stream_end - time.monotonic()
                await self.datapath.invoke(req, left if left != float("inf") else None, rid, out.response)
            except RpcError as exc:
                out.code, out.message = exc.code.value[0], exc.message
            except (StoreError, ConnectionError) as exc:
                out.code, out.message = (
                    grpc.StatusCode.UNAVAILABLE.value[0],
                    f"state store unavailable: {exc}",
                )
            except Exception as exc:
                log.exception("invocation %d of a stream failed", index)
                out.code, out.message = grpc.StatusCode.INTERNAL.value[0], f"internal error: {exc}"
            finally:
                slots.release()
            if out.code:
                out.ClearField("response")  # nothing half-written goes with a failure
            answers.put_nowait(out)

        async def read() -> None:
            try:
                index = 0
                async for item in request_iterator:
                    await slots.acquire()
                    task = asyncio.create_task(one(index, item.invocation))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    index += 1
                while running:
                    await asyncio.gather(*running, return_exceptions=True)
            finally:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    # --- reports -------------------------------------------------------------------------
    async def _service_status(self, name: str) -> gateway_pb2.ServiceStatus:
        address = self.settings.service_addr(name)
        status = gateway_pb2.ServiceStatus(name=name, address=address)
        if name == "gateway":
            status.status = gateway_pb2.SERVING_STATUS_SERVING
            return status
        try:
            resp = await health_pb2_grpc.HealthStub(self.datapath.router.channel(address)).Check(
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
        windows = reports.windows_of(request)
        services = await asyncio.gather(*(self._service_status(n) for n in SERVICE_NAMES))
        resp = gateway_pb2.GetStatusResponse(
            services=services, records_buffered=self.recorder.buffered, records_dropped=self.recorder.dropped
        )
        reasons = [f"{s.name}: {gateway_pb2.ServingStatus.Name(s.status)}" for s in services if s.status != 1]
        try:
            apps = (
                [await require_app(self.store, request.app)] if request.app else await self.store.list_apps()
            )
            instances = await self.store.list_instances()
            statuses = await reports.app_statuses(self.store, apps, instances, windows, time.time())
        except StoreError as exc:
            # Redis is down: answer from what the data path caches (no latency figures).
            reasons.append(f"redis: unreachable ({exc}); apps and instances from the gateway's caches")
            cached = self.datapath.apps.entries
            names = [request.app] if request.app else sorted(cached)
            if request.app and request.app not in cached:
                raise RpcError(
                    grpc.StatusCode.UNAVAILABLE, f"app: {request.app!r} is not cached and Redis is down"
                ) from exc
            apps = [
                gateway_pb2.App(spec=appspec.to_proto(cached[n].spec), version=cached[n].version)
                for n in names
            ]
            instances = list(self.datapath.registry.instances.values())
            statuses = [reports.app_status(a, instances, [], None, windows, time.time()) for a in apps]
        resp.apps.extend(statuses)
        if not self.recorder.healthy:
            reasons.append(f"recording: redis unavailable, {self.recorder.buffered} records buffered")
        if self.recorder.dropped:
            reasons.append(
                f"recording: {self.recorder.dropped} records dropped (buffer full while Redis was down)"
            )
        if not self.datapath.registry.connected:
            reasons.append("instance registry: not following Redis; routing on the cached copy")
        resp.degraded_reasons.extend(reasons)
        resp.degraded = bool(reasons)
        return resp

    @rpc
    async def GetCostReport(
        self, request: gateway_pb2.GetCostReportRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetCostReportResponse:
        return await reports.cost_report(self.store, request, time.time())
