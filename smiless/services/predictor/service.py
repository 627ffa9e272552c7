"""Predictor service: serves arrival history. The predictors (Predict) arrive with the
predictor issue; until then Predict answers UNIMPLEMENTED rather than a guess."""

from __future__ import annotations

import grpc

from smiless.config import Settings
from smiless.server import RpcError, rpc
from smiless.services.common import require_app, seconds
from smiless.store import Store
from smiless.v1 import predictor_pb2, predictor_pb2_grpc


class PredictorService(predictor_pb2_grpc.PredictorServicer):
    name = "predictor"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        predictor_pb2_grpc.add_PredictorServicer_to_server(self, server)
        return ["smiless.v1.Predictor"]

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @rpc
    async def Predict(
        self, request: predictor_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predictor_pb2.PredictResponse:
        await require_app(self.store, request.app)
        raise RpcError(grpc.StatusCode.UNIMPLEMENTED, "Predict: the predictors are not implemented yet")

    @rpc
    async def GetHistory(
        self, request: predictor_pb2.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> predictor_pb2.GetHistoryResponse:
        await require_app(self.store, request.app)
        start, end = seconds(request.start), seconds(request.end)
        if start is not None and end is not None and end < start:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "end: before start")
        resp = predictor_pb2.GetHistoryResponse(app=request.app)
        for t in await self.store.arrivals(request.app, start, end):
            resp.arrivals.add().FromNanoseconds(round(t * 1e9))
        return resp
