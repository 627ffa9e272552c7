"""Prometheus metrics of every smiless service: this module defines all of them.

Each service process serves `/metrics` (prometheus-client's HTTP server, a daemon thread)
on its gRPC port + `SMILESS_METRICS_PORT_OFFSET` (gateway 51051, profiler 51052, predictor
51053, optimizer 51054 by default; offset 0: no endpoint). The names are listed in the
README ("Metrics"). Where each figure comes from:

- RPC counts and latencies: the service shell's interceptor (smiless/server.py), every
  service, every method, by status code.
- Invocations, end-to-end and per-stage latency, cold stages: the gateway, read from each
  `Invoke` response (the figures the client gets, not a second measurement).
- Instances by state and config, instance starts, cost accrued: the optimizer (it owns the
  instances), from the instance registry and the lifetimes in Redis, re-read every
  `SMILESS_METRICS_REFRESH_S`; cost through smiless/accounting.py like every cost figure.

Label values are bounded: apps and stages only once the gateway found the app (a call for an
unknown app is counted in the RPC counter only), configs from the catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any, Protocol

import grpc
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smiless import accounting, logs
from smiless.protoutil import get_seconds, status_code
from smiless.store import Store
from smiless.v1 import common_pb2, gateway_pb2

log = logging.getLogger("smiless.metrics")

# Seconds: from a warm tiny stage (sub-millisecond) to a cold chain of big models (a minute).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

RPC_REQUESTS = Counter(
    "smiless_rpc_requests",
    "gRPC calls a service handled, by method and status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "smiless_rpc_latency_seconds",
    "Time a service spent on a gRPC call, from the handler's start to its answer.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
INVOCATIONS = Counter(
    "smiless_invocations",
    "Invocations of an app by outcome: ok (SLA met), sla_violated (answered late), failed.",
    ["app", "outcome"],
)
INVOCATION_LATENCY = Histogram(
    "smiless_invocation_latency_seconds",
    "End-to-end latency of answered invocations (gateway receipt to response).",
    ["app"],
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "smiless_stage_latency_seconds",
    "Latency of one stage of an answered invocation (queueing + inference + transport).",
    ["app", "stage"],
    buckets=LATENCY_BUCKETS,
)
COLD_STAGES = Counter(
    "smiless_cold_stages",
    "Stages of answered invocations that met an instance that was not ready (a cold start).",
    ["app", "stage"],
)
COLD_INVOCATIONS = Counter(
    "smiless_cold_invocations",
    "Answered invocations in which at least one stage met a cold instance.",
    ["app"],
)
# Failures that happen before the gateway knows the app exists: no per-app label for them.
_NOT_PER_APP = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
INVOKE_METHOD = "/smiless.v1.Gateway/Invoke"


@functools.cache
def _child(metric: Any, *labels: str) -> Any:
    """The labelled child of a metric, looked up once (labels() costs microseconds a call)."""
    return metric.labels(*labels)


def observe_invocation(response: gateway_pb2.InvokeResponse, app: str) -> None:
    """Count one answered invocation and its stages."""
    _child(INVOCATIONS, app, "ok" if response.sla_met else "sla_violated").inc()
    _child(INVOCATION_LATENCY, app).observe(get_seconds(response.latency))
    for st in response.stages:
        _child(STAGE_LATENCY, app, st.function).observe(get_seconds(st.latency))
        if st.cold:
            _child(COLD_STAGES, app, st.function).inc()
    if response.cold:
        _child(COLD_INVOCATIONS, app).inc()


def observe_failed_invocation(app: str, code: grpc.StatusCode) -> None:
    if app and code not in _NOT_PER_APP:
        _child(INVOCATIONS, app, "failed").inc()


class RpcRecorder:
    """What the shell's interceptor calls once per finished call: cheap label children,
    resolved once per (method, code)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._counts: dict[tuple[str, grpc.StatusCode], Any] = {}
        self._latency: dict[str, Any] = {}

    def done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        child = self._counts.get((method, code))
        if child is None:
            short = method.rsplit("/", 1)[-1]
            child = self._counts[(method, code)] = RPC_REQUESTS.labels(self.service, short, code.name)
        child.inc()
        hist = self._latency.get(method)
        if hist is None:
            hist = self._latency[method] = RPC_LATENCY.labels(self.service, method.rsplit("/", 1)[-1])
        hist.observe(seconds)

    def invoked(self, method: str, request: object, response: object, code: grpc.StatusCode) -> None:
        """Per-app figures of a unary Invoke (answered or failed)."""
        if method != INVOKE_METHOD or not isinstance(request, gateway_pb2.InvokeRequest):
            return
        if isinstance(response, gateway_pb2.InvokeResponse):
            observe_invocation(response, request.app)
        else:
            observe_failed_invocation(request.app, code)


class StreamTally:
    """Per-app figures of one InvokeStream: answers come in completion order and name their
    request by `index`, so the app of each pending request is kept until it is answered."""

    def __init__(self) -> None:
        self.apps: dict[int, str] = {}
        self.n = 0

    def request(self, request: object) -> None:
        if isinstance(request, gateway_pb2.InvokeStreamRequest):
            self.apps[self.n] = request.invocation.app
        self.n += 1

    def response(self, response: object) -> None:
        if not isinstance(response, gateway_pb2.InvokeStreamResponse):
            return
        app = self.apps.pop(response.index, "")
        if response.code == 0:
            observe_invocation(response.response, app)
        else:
            observe_failed_invocation(app, status_code(response.code))


INVOKE_STREAM_METHOD = "/smiless.v1.Gateway/InvokeStream"


# --- fleet (the optimizer's endpoint) -------------------------------------------------------
FLEET_SERVICE = "optimizer"  # it owns the instances; one exporter avoids double counting


def state_name(state: int) -> str:
    """READY, STARTING, ... (the state's enum name without its prefix)."""
    return str(common_pb2.InstanceState.Name(state)).removeprefix("INSTANCE_STATE_")  # type: ignore[arg-type]


class FleetCollector(Collector):
    """Instances by state and config, instance starts and cost accrued, from a snapshot of
    the registry and the lifetimes that `refresh()` takes (scrapes never touch Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: list[common_pb2.Instance] = []
        self._lifetimes: list[common_pb2.Instance] = []
        self._at = 0.0

    async def refresh(self, store: Store) -> None:
        instances = await store.list_instances()
        lifetimes = await store.lifetimes()
        with self._lock:
            self._instances, self._lifetimes, self._at = instances, lifetimes, time.time()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            instances, lifetimes, at = self._instances, self._lifetimes, self._at
        labels = ["app", "function", "config"]
        gauge = GaugeMetricFamily(
            "smiless_instances",
            "Live instances by app, function, config and state.",
            labels=[*labels, "state"],
        )
        for (app, fn, config, state), n in sorted(
            Tally((i.app, i.function, i.config, state_name(i.state)) for i in instances).items()
        ):
            gauge.add_metric([app, fn, config, state], n)
        yield gauge
        starts = CounterMetricFamily(
            "smiless_instance_starts",
            "Instances started (each one a cold start paid for), from the recorded lifetimes.",
            labels=labels,
        )
        cost = CounterMetricFamily(
            "smiless_cost_accrued",
            "Cost accrued so far (lifetime x price, catalogue price units), as of the last refresh.",
            labels=labels,
        )
        n_starts: Tally[tuple[str, str, str]] = Tally()
        accrued: dict[tuple[str, str, str], float] = {}
        for life in map(accounting.lifetime_of, lifetimes):
            key = (life.app, life.function, life.config)
            n_starts[key] += 1
            accrued[key] = accrued.get(key, 0.0) + accounting.cost(life, 0.0, at, at)
        for key in sorted(n_starts):
            starts.add_metric(list(key), n_starts[key])
            cost.add_metric(list(key), accrued[key])
        yield starts
        yield cost
        refreshed = GaugeMetricFamily(
            "smiless_fleet_refreshed_timestamp_seconds", "When the fleet figures were last read (epoch s)."
        )
        refreshed.add_metric([], at)
        yield refreshed


async def run_fleet(collector: FleetCollector, store: Store, interval: float) -> None:
    """Refresh the fleet snapshot every `interval` until cancelled; Redis errors skip a round."""
    while True:
        try:
            await collector.refresh(store)
        except Exception as exc:  # a lost Redis must not end the refresher
            logs.event(log, "fleet metrics refresh failed", logging.WARNING, error=str(exc))
        await asyncio.sleep(interval)


# --- the gateway's recorder ----------------------------------------------------------------
class RecorderState(Protocol):
    dropped: int

    @property
    def buffered(self) -> int: ...


class RecorderCollector(Collector):
    """Records waiting for Redis and records dropped (buffer full while Redis was down), read
    from the gateway's recorder at scrape time."""

    def __init__(self) -> None:
        self.recorder: RecorderState | None = None

    def collect(self) -> Iterator[Metric]:
        rec = self.recorder
        if rec is None:
            return
        dropped = CounterMetricFamily(
            "smiless_records_dropped",
            "Records (arrivals, invocations, stage latencies) dropped because Redis was down and "
            "the gateway's buffer was full.",
        )
        dropped.add_metric([], rec.dropped)
        yield dropped
        buffered = GaugeMetricFamily("smiless_records_buffered", "Records waiting to be written to Redis.")
        buffered.add_metric([], rec.buffered)
        yield buffered


_recorder = RecorderCollector()


def watch_recorder(recorder: RecorderState) -> None:
    """Export this recorder's counters (the last one given wins: one gateway per process)."""
    if _recorder.recorder is None:
        with contextlib.suppress(ValueError):
            REGISTRY.register(_recorder)
    _recorder.recorder = recorder


# --- the endpoint ---------------------------------------------------------------------------
class Endpoint:
    """The running `/metrics` HTTP server of this process."""

    def __init__(self, host: str, port: int) -> None:
        self.server, self.thread = start_http_server(port, addr=host, registry=REGISTRY)
        self.address = f"{host}:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


_fleet: FleetCollector | None = None


def fleet_collector() -> FleetCollector:
    """The process's one fleet collector, registered on first use."""
    global _fleet
    if _fleet is None:
        _fleet = FleetCollector()
        with contextlib.suppress(ValueError):
            REGISTRY.register(_fleet)
    return _fleet
