"""Prometheus endpoints of the real services (the stack's), scraped over HTTP: the metrics
exist, are named as the README says, and move with the calls made here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from prometheus_client.parser import text_string_to_metric_families

from smiless import appspec, tensors, zoo
from smiless.config import SERVICE_NAMES, Settings
from smiless.stack import LocalStack, free_port, health_status
from smiless.v1 import gateway_pb2, gateway_pb2_grpc
from tests.waiting import wait_until_sync

APP = "metrics-chain"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(stack: LocalStack, service: str) -> Samples:
    assert stack.metrics_ports is not None, "the stack fixture names each service's metrics port"
    port = stack.metrics_ports[service]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def settled(stack: LocalStack, service: str = "gateway") -> Samples:
    """A scrape once the per-app figures stopped moving: the gateway observes them just after
    each answer is sent, so a scrape right after a call may be a loop turn early."""
    last = scrape(stack, service)
    for _ in range(50):
        time.sleep(0.2)
        now = scrape(stack, service)
        if value(now, "smiless_invocations_total") == value(last, "smiless_invocations_total"):
            return now
        last = now
    return last


def is_serving(proc: subprocess.Popen[str], port: int) -> bool:
    assert proc.poll() is None, "the service exited"
    return health_status(f"127.0.0.1:{port}", 0.5) == "SERVING"


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def gw(stack: LocalStack) -> Iterator[gateway_pb2_grpc.GatewayStub]:
    with grpc.insecure_channel(stack.addresses["gateway"]) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        spec = appspec.validate(
            appspec.from_dict(
                {
                    "name": APP,
                    "sla": "30s",
                    "functions": [{"name": "a", "model": "tiny-mlp"}, {"name": "b", "model": "tiny-mlp"}],
                    "edges": [["a", "b"]],
                }
            )
        )
        stub.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10)
        yield stub


@pytest.mark.e2e
@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_service_serves_metrics(stack: LocalStack, service: str) -> None:
    samples = scrape(stack, service)
    # the stack's start-up health checks went through the shell's interceptor
    assert value(samples, "smiless_rpc_requests_total", service=service, method="Check", code="OK") >= 1
    assert value(samples, "smiless_rpc_latency_seconds_count", service=service, method="Check") >= 1


@pytest.mark.e2e
def test_gateway_metrics_move_with_invocations(stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub) -> None:
    x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
    gw.Invoke(gateway_pb2.InvokeRequest(app=APP, input=x), timeout=120)  # warm the instances
    before = settled(stack)
    for _ in range(3):
        gw.Invoke(gateway_pb2.InvokeRequest(app=APP, input=x), timeout=60)
    with pytest.raises(grpc.RpcError):
        gw.Invoke(gateway_pb2.InvokeRequest(app="no-such-app", input=x), timeout=10)
    with pytest.raises(grpc.RpcError) as late:  # a known app that runs out of time: a failed invocation
        gw.Invoke(gateway_pb2.InvokeRequest(app=APP, input=x, timeout=Duration(nanos=1000)), timeout=10)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    stream = gw.InvokeStream(
        iter([gateway_pb2.InvokeStreamRequest(invocation=gateway_pb2.InvokeRequest(app=APP, input=x))] * 2),
        timeout=60,
    )
    assert [a.code for a in stream] == [0, 0]
    after = settled(stack)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("smiless_rpc_requests_total", service="gateway", method="Invoke", code="OK") == 3
    assert moved("smiless_rpc_requests_total", service="gateway", method="Invoke", code="NOT_FOUND") == 1
    assert moved("smiless_rpc_requests_total", service="gateway", method="InvokeStream", code="OK") == 1
    assert moved("smiless_invocations_total", app=APP, outcome="ok") == 5
    assert moved("smiless_invocations_total", app=APP, outcome="failed") == 1
    assert (
        moved("smiless_rpc_requests_total", service="gateway", method="Invoke", code="DEADLINE_EXCEEDED") == 1
    )
    assert moved("smiless_invocation_latency_seconds_count", app=APP) == 5
    assert moved("smiless_invocation_latency_seconds_sum", app=APP) > 0
    for stage in ("a", "b"):
        assert moved("smiless_stage_latency_seconds_count", app=APP, stage=stage) == 5
    assert not any(dict(ls).get("app") == "no-such-app" for _, ls in after), "no label for unknown apps"
    assert value(after, "smiless_cold_stages_total", app=APP) >= 1, "the first call met cold instances"
    assert ("smiless_records_dropped_total", frozenset()) in after, "the recorder's counters are exported"
    assert value(after, "smiless_records_dropped_total") == 0
    assert ("smiless_records_buffered", frozenset()) in after


@pytest.mark.e2e
def test_optimizer_exports_instances_and_cost(stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub) -> None:
    x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
    gw.Invoke(gateway_pb2.InvokeRequest(app=APP, input=x), timeout=120)
    refresh = Settings().metrics_refresh_s

    def both_started() -> Samples | None:
        samples = scrape(stack, "optimizer")
        return samples if value(samples, "smiless_instance_starts_total", app=APP) >= 2 else None

    samples = wait_until_sync(
        both_started, 3 * refresh + 5, "both functions' starts in the fleet figures", 0.5
    )
    assert value(samples, "smiless_instance_starts_total", app=APP, function="a") >= 1
    assert value(samples, "smiless_instance_starts_total", app=APP, function="b") >= 1
    first = value(samples, "smiless_cost_accrued_total", app=APP)
    assert first > 0
    states = {dict(ls)["state"] for (n, ls) in samples if n == "smiless_instances" and dict(ls)["app"] == APP}
    assert states <= {"STARTING", "READY", "DRAINING"}
    stamp = value(samples, "smiless_fleet_refreshed_timestamp_seconds")
    assert 0 < time.time() - stamp < 3 * refresh + 5
    # cost accrues: a later refresh reports at least as much (more while an instance lives)

    def refreshed() -> Samples | None:
        samples = scrape(stack, "optimizer")
        return samples if value(samples, "smiless_fleet_refreshed_timestamp_seconds") != stamp else None

    later = wait_until_sync(refreshed, 3 * refresh + 5, "the fleet figures to be refreshed", 0.5)
    assert value(later, "smiless_cost_accrued_total", app=APP) >= first
    if value(later, "smiless_instances", app=APP):
        assert value(later, "smiless_cost_accrued_total", app=APP) > first


def test_metrics_port_taken_is_logged_and_the_service_serves(redis_url: str) -> None:
    """Observability must not take serving down: a taken metrics port is an error line and
    the service runs without an endpoint."""
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "smiless", "serve", "predictor", "--port", str(port)],
            env={**os.environ, "SMILESS_REDIS_URL": redis_url, "SMILESS_METRICS_PORT": str(taken)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until_sync(lambda: is_serving(proc, port), 60, "the predictor to serve", 0.1)
        finally:
            proc.terminate()
            _, errs = proc.communicate(timeout=30)
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in errs and "Traceback" not in errs


def test_offset_zero_disables_the_endpoint(redis_url: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smiless", "serve", "predictor", "--port", str(port)],
        env={
            **os.environ,
            "SMILESS_REDIS_URL": redis_url,
            "SMILESS_METRICS_PORT_OFFSET": "0",
            "SMILESS_LOG_FORMAT": "json",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_sync(lambda: is_serving(proc, port), 60, "the predictor to serve", 0.1)
    finally:
        proc.terminate()
        _, errs = proc.communicate(timeout=30)
    serving = [json.loads(line) for line in errs.splitlines() if '"serving"' in line]
    assert serving and serving[0]["metrics"] == "", "no endpoint was started"
