"""Optimizer service: the gRPC facade over the optimizer's parts.

It wires together the instances (`instances.InstanceManager`: nothing else starts or stops
workers), the planner (`planner.AppPlanner`, fed by `forecasts.PredictorClient`) and the
controller (`controller.Controller`: pre-warm, keep alive, stop, scale per plan), and serves
`Plan`, `GetPlan`, `ExplainPlan`, `EnsureInstance` (an arrival that finds no ready instance)
and `ListInstances`.
"""

from __future__ import annotations

import asyncio
import os

import grpc

from smiless.aio import stop_task
from smiless.backends import make_backend
from smiless.backends.base import WorkerBackend
from smiless.catalogue import load_catalogue, mark_runnable
from smiless.config import Settings
from smiless.policy.search import explain
from smiless.server import RpcError, rpc
from smiless.services.common import require_app
from smiless.services.optimizer.controller import Controller
from smiless.services.optimizer.forecasts import PredictorClient
from smiless.services.optimizer.instances import InstanceManager
from smiless.services.optimizer.planner import AppPlanner
from smiless.services.optimizer.planning import explanation_to_proto
from smiless.store import Store
from smiless.v1 import optimizer_pb2, optimizer_pb2_grpc


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
        self.instances = InstanceManager(settings, store, backend or make_backend(settings), self.catalogue)
        self.predictor = PredictorClient(settings)
        inits = self.instances.observed_inits
        self.planner = AppPlanner(settings, store, self.catalogue, self.predictor, inits)
        self.controller = Controller(settings, store, self.instances, self.planner, self.predictor)
        self.loop: asyncio.Task[None] | None = None
        """The controller's loop, when it runs."""

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        optimizer_pb2_grpc.add_OptimizerServicer_to_server(self, server)
        return ["smiless.v1.Optimizer"]

    async def start(self) -> None:
        await self.instances.adopt()
        if self.settings.controller:
            self.loop = asyncio.create_task(self.controller.run())

    async def stop(self) -> None:
        if self.loop is not None:
            await stop_task(self.loop)
        await self.instances.close()

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
        inst, started = await self.instances.ensure(request.app, request.function, models[request.function])
        return optimizer_pb2.EnsureInstanceResponse(instance=inst, started=started)

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

    @rpc
    async def Plan(
        self, request: optimizer_pb2.PlanRequest, context: grpc.aio.ServicerContext
    ) -> optimizer_pb2.PlanResponse:
        msg, _ = await self.planner.plan(request.app)
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
        msg, plan = await self.planner.plan(request.app)
        return optimizer_pb2.ExplainPlanResponse(plan=msg, functions=explanation_to_proto(explain(plan), msg))
