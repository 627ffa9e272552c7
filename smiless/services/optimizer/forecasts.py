"""The predictor's answers, as the planner and the controller read them."""

from __future__ import annotations

import math
import time

import grpc

from smiless.config import Settings
from smiless.policy.costmodel import Forecast
from smiless.server import RpcError
from smiless.services.common import seconds
from smiless.v1 import predictor_pb2, predictor_pb2_grpc


class PredictorClient:
    """Asks the predictor service for an app's latest forecast."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stub: predictor_pb2_grpc.PredictorStub | None = None

    async def predict(self, app: str) -> predictor_pb2.PredictResponse:
        """The predictor's latest forecast for `app` (UNAVAILABLE when it cannot answer)."""
        if self.stub is None:
            channel = grpc.aio.insecure_channel(self.settings.predictor_addr)
            self.stub = predictor_pb2_grpc.PredictorStub(channel)
        try:
            pred: predictor_pb2.PredictResponse = await self.stub.Predict(
                predictor_pb2.PredictRequest(app=app), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, f"prediction for {app!r}: {exc.details()}") from exc
        return pred


def forecast_of(pred: predictor_pb2.PredictResponse) -> tuple[Forecast, float]:
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


def forecast_key(pred: predictor_pb2.PredictResponse) -> tuple[object, ...]:
    """What a plan depends on in a prediction: a change means re-plan."""
    return (
        pred.last_arrival.ToNanoseconds() if pred.HasField("last_arrival") else None,
        pred.next_it.ToNanoseconds(),
        pred.count,
        pred.keep_alive.ToNanoseconds(),
        pred.burst.ToNanoseconds() if pred.HasField("burst") else None,
        pred.next_it_median.ToNanoseconds() if pred.HasField("next_it_median") else None,
    )
