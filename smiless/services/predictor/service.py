"""Predictor service: per-app arrival history in, next IT / count / keep-alive out.

`Predict` is cheap: it builds the app's per-slot series from its arrival history (mirrored
in memory, only new entries read from Redis: history.py) and asks the app's current
model. Training never blocks it: a background task refits one app at a time, in a worker
thread on one torch thread (the CPU budget: at most one core, one fit at a time;
each fit is bounded by the predictor's TrainingBudget), when an app has gained
`predictor_retrain_arrivals` arrivals since its last fit; the fresh model is swapped in and
persisted to Redis, so it survives a restart. Until an app has enough history the
SMIless model answers with its documented cold-start rule and says so.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from smiless import logs
from smiless.aio import stop_task
from smiless.config import Settings
from smiless.policy.predictors import Predictor, SlotSeries, burst_span, load_predictor, make_predictor
from smiless.protoutil import get_seconds, set_seconds
from smiless.server import RpcError, rpc
from smiless.services.common import require_app, seconds
from smiless.services.predictor.history import ArrivalHistory, FloatArray
from smiless.store import Store
from smiless.v1 import predictor_pb2, predictor_pb2_grpc

log = logging.getLogger("smiless.predictor")
MODEL_KIND = "smiless"


def with_correction(model: Predictor, correction: str) -> Predictor:
    """`model` with the configured IT correction, where it has one (a SMIless model; a
    stored one keeps the network it was trained with)."""
    from smiless.policy.predictors.lstm import SMIlessPredictor, as_correction  # torch: first use

    if isinstance(model, SMIlessPredictor) and model.it_model.correction != correction:
        return model.with_correction(as_correction(correction))
    return model


class PredictorService(predictor_pb2_grpc.PredictorServicer):
    name = "predictor"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.models: dict[str, Predictor] = {}
        self.fitted_on: dict[str, int] = {}  # app -> arrivals in the history of its last fit
        self.history = ArrivalHistory(store)
        self._trainer: asyncio.Task[None] | None = None

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        predictor_pb2_grpc.add_PredictorServicer_to_server(self, server)
        return ["smiless.v1.Predictor"]

    async def start(self) -> None:
        self._trainer = asyncio.create_task(self._train_loop())

    async def stop(self) -> None:
        await stop_task(self._trainer)

    # --- history and models --------------------------------------------------------------
    async def _history(self, app: str, now: float) -> tuple[SlotSeries, FloatArray]:
        """The app's series over the history window, and the arrivals it was built from (read
        incrementally: see history.py)."""
        arrivals = await self.history.window(app, now - self.settings.predictor_history_s, now)
        if not arrivals.size:
            return SlotSeries.from_counts([]), arrivals
        series = SlotSeries.from_arrivals(arrivals, slot_s=self.settings.slot_s, end=now)
        return series, arrivals

    async def _model(self, app: str) -> Predictor:
        model = self.models.get(app)
        if model is None:
            raw = await self.store.get_predictor(app)
            if raw is not None:
                try:
                    model = load_predictor(raw)
                except ValueError as exc:  # a model this code cannot read: start afresh
                    logs.event(log, "stored predictor unreadable", logging.WARNING, app=app, error=str(exc))
            if model is None:
                model = make_predictor(MODEL_KIND)
            model = with_correction(model, self.settings.predictor_it_correction)
            self.models[app] = model
        return model

    async def train(self, app: str) -> bool:
        """Refit `app` if it gained enough arrivals; True when a new model was swapped in."""
        series, arrivals = await self._history(app, time.time())
        last = self.fitted_on.get(app, 0)
        if len(arrivals) - last < self.settings.predictor_retrain_arrivals and app in self.fitted_on:
            return False
        if series.its.size < self.settings.predictor_min_its:
            return False
        fresh = with_correction(make_predictor(MODEL_KIND), self.settings.predictor_it_correction)
        began = time.monotonic()
        await asyncio.to_thread(fresh.fit, series)
        self.models[app] = fresh
        self.fitted_on[app] = len(arrivals)
        await self.store.put_predictor(app, fresh.to_bytes())
        logs.event(
            log,
            "predictor trained",
            app=app,
            arrivals=len(arrivals),
            fit_s=round(time.monotonic() - began, 3),
        )
        return True

    async def _train_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.predictor_train_interval_s)
            try:
                apps = await self.store.list_apps()
                self.history.keep_only({a.spec.name for a in apps})  # deleted apps' mirrors go
                for app in apps:
                    await self.train(app.spec.name)
            except Exception:  # keep training later; Predict keeps answering meanwhile
                log.exception("training round failed")

    # --- RPCs ----------------------------------------------------------------------------
    @rpc
    async def Predict(
        self, request: predictor_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predictor_pb2.PredictResponse:
        await require_app(self.store, request.app)
        now = time.time()
        series, arrivals = await self._history(request.app, now)
        model = await self._model(request.app)
        pred = model.predict(series)
        slot = self.settings.slot_s
        resp = predictor_pb2.PredictResponse(
            app=request.app,
            count=pred.count,
            model=pred.model,
            recent_error=pred.recent_error or 0.0,
            reason=pred.reason,
        )
        set_seconds(resp.next_it, pred.it_slots * slot)
        keep = pred.keep_alive_slots if pred.keep_alive_slots is not None else 0
        set_seconds(resp.keep_alive, keep * slot)
        set_seconds(resp.predicted_at, now)
        set_seconds(resp.slot, slot)
        set_seconds(resp.burst, burst_span(arrivals, slot))
        if pred.it_median_slots is not None:
            set_seconds(resp.next_it_median, pred.it_median_slots * slot)
        if arrivals.size:
            set_seconds(resp.last_arrival, float(arrivals[-1]))
        return resp

    @rpc
    async def LoadHistory(
        self, request: predictor_pb2.LoadHistoryRequest, context: grpc.aio.ServicerContext
    ) -> predictor_pb2.LoadHistoryResponse:
        await require_app(self.store, request.app)
        times = [get_seconds(t) for t in request.arrivals]
        now = time.time()
        for i, t in enumerate(times):
            if i and t < times[i - 1]:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"arrivals[{i}]: not in ascending order")
            if t > now + 1.0:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"arrivals[{i}]: lies in the future")
        if request.replace:
            await self.store.replace_arrivals(request.app, times, self.settings.arrival_retention_s)
        else:
            last = await self.store.last_arrival(request.app)
            if times and last is not None and times[0] <= last:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "arrivals[0]: not newer than the app's last recorded arrival (use replace)",
                )
            await self.store.record_arrivals(request.app, times, self.settings.arrival_retention_s)
        self.fitted_on.pop(request.app, None)  # new history: refit at the next round
        if request.replace:
            self.history.forget(request.app)
        logs.event(log, "history loaded", app=request.app, arrivals=len(times), replace=request.replace)
        return predictor_pb2.LoadHistoryResponse(loaded=len(times))

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
            set_seconds(resp.arrivals.add(), t)
        return resp
