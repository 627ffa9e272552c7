"""Profiler service: serves stored profiles. Measurement and fitting (ProfileFunction)
arrive with the profiler issue; until then it answers UNIMPLEMENTED, never made-up numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from smiless import zoo
from smiless.config import Settings
from smiless.server import RpcError, rpc
from smiless.store import Store
from smiless.v1 import common_pb2, profiler_pb2, profiler_pb2_grpc

_KINDS = {common_pb2.HARDWARE_KIND_CPU: "cpu", common_pb2.HARDWARE_KIND_GPU: "gpu"}


def _check_model(model: str) -> None:
    if not model:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "model: required")
    if zoo.get(model) is None:
        raise RpcError(grpc.StatusCode.NOT_FOUND, f"model: unknown model {model!r}")


class ProfilerService(profiler_pb2_grpc.ProfilerServicer):
    name = "profiler"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        profiler_pb2_grpc.add_ProfilerServicer_to_server(self, server)
        return ["smiless.v1.Profiler"]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def ProfileFunction(
        self, request: profiler_pb2.ProfileFunctionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[profiler_pb2.ProfileFunctionResponse]:
        try:
            _check_model(request.model)
        except RpcError as exc:
            await context.abort(exc.code, exc.message)
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "ProfileFunction: measurement is not implemented yet"
        )
        yield profiler_pb2.ProfileFunctionResponse()  # pragma: no cover - unreachable, makes this a generator

    @rpc
    async def GetProfile(
        self, request: profiler_pb2.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> profiler_pb2.GetProfileResponse:
        _check_model(request.model)
        if request.kind and request.kind not in _KINDS:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"kind: unknown hardware kind {request.kind}")
        profiles = await self.store.get_profiles(request.model)
        if request.kind:
            profiles = {k: v for k, v in profiles.items() if k == _KINDS[request.kind]}
        if not profiles:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"model: no profile stored for {request.model!r}")
        return profiler_pb2.GetProfileResponse(profiles=[profiles[k] for k in sorted(profiles)])
