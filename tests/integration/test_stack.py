"""The four services started by the embedded stack, over real gRPC and Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from smiless import appspec, tensors, zoo
from smiless.stack import LocalStack
from smiless.store import StageLatency, Store
from smiless.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    optimizer_pb2,
    optimizer_pb2_grpc,
    predictor_pb2,
    predictor_pb2_grpc,
    profiler_pb2,
    profiler_pb2_grpc,
)
from tests.unit.test_appspec import MALFORMED
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e  # every test here runs against the whole stack

EXPECTED_SERVICE = {
    "gateway": "smiless.v1.Gateway",
    "profiler": "smiless.v1.Profiler",
    "predictor": "smiless.v1.Predictor",
    "optimizer": "smiless.v1.Optimizer",
}


@pytest.fixture(scope="module")
def gw(stack: LocalStack) -> Iterator[gateway_pb2_grpc.GatewayStub]:
    with grpc.insecure_channel(stack.addresses["gateway"]) as ch:
        yield gateway_pb2_grpc.GatewayStub(ch)


@pytest.fixture(scope="module")
def registered(stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub) -> list[appspec.AppSpec]:
    specs = [appspec.load_file(p) for p in appspec.example_paths()]
    for s in specs:
        gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(s), replace=True), timeout=10)
    return specs


@pytest.mark.parametrize("name", list(EXPECTED_SERVICE))
def test_health_and_reflection(stack: LocalStack, name: str) -> None:
    with grpc.insecure_channel(stack.addresses[name]) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", EXPECTED_SERVICE[name]):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        listed = {s.name for s in replies[0].list_services_response.service}
        assert {EXPECTED_SERVICE[name], "grpc.health.v1.Health"} <= listed


@pytest.mark.parametrize(("case", "bad", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_specs_rejected_and_gateway_keeps_serving(
    stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub, case: str, bad: appspec.AppSpec, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(bad)), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ":")
    with grpc.insecure_channel(stack.addresses["gateway"]) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
    assert stack.procs["gateway"].poll() is None


def test_register_needs_app_and_rejects_duplicates(
    gw: gateway_pb2_grpc.GatewayStub, registered: list[appspec.AppSpec]
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        gw.RegisterApp(gateway_pb2.RegisterAppRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(registered[0])), timeout=5)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    again = gw.RegisterApp(
        gateway_pb2.RegisterAppRequest(app=appspec.to_proto(registered[0]), replace=True), timeout=5
    )
    assert again.app.version >= 2


@pytest.mark.parametrize("app", ["image-query", "voice-assistant", "amber-alert"])
def test_invoke_each_example(
    gw: gateway_pb2_grpc.GatewayStub, registered: list[appspec.AppSpec], app: str
) -> None:
    spec = next(s for s in registered if s.name == app)
    x = zoo.MODELS[spec.model_of(spec.entry)].example_input(seed=1)
    resp = gw.Invoke(gateway_pb2.InvokeRequest(app=app, input=tensors.to_proto(x)), timeout=180)
    assert set(resp.outputs) == set(spec.leaves)
    for leaf in spec.leaves:
        assert zoo.MODELS[spec.model_of(leaf)].output.check(tensors.from_proto(resp.outputs[leaf])) is None
    assert [s.function for s in resp.stages] == spec.topological_order()
    offsets = {s.function: s for s in resp.stages}
    for parent, child in spec.edges:  # a stage starts only after its parents finished
        p, c = offsets[parent], offsets[child]
        assert c.start_offset.ToNanoseconds() >= p.start_offset.ToNanoseconds() + p.latency.ToNanoseconds()
    assert resp.latency.ToNanoseconds() > 0
    warm = gw.Invoke(gateway_pb2.InvokeRequest(app=app, input=tensors.to_proto(x)), timeout=60)
    assert not warm.cold and warm.latency.ToNanoseconds() < resp.latency.ToNanoseconds()


def test_parallel_branches_run_concurrently(
    gw: gateway_pb2_grpc.GatewayStub, registered: list[appspec.AppSpec]
) -> None:
    x = zoo.MODELS["speechrecognition"].example_input(seed=2)
    resp = gw.Invoke(gateway_pb2.InvokeRequest(app="voice-assistant", input=tensors.to_proto(x)), timeout=180)
    st = {s.function: s for s in resp.stages}
    tm_start, ner_start = st["tm"].start_offset.ToNanoseconds(), st["ner"].start_offset.ToNanoseconds()
    ner_end = ner_start + st["ner"].latency.ToNanoseconds()
    assert tm_start < ner_end, "tm and ner (siblings) overlap in time"


def test_invoke_errors(gw: gateway_pb2_grpc.GatewayStub, registered: list[appspec.AppSpec]) -> None:
    def code(req: gateway_pb2.InvokeRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as info:
            gw.Invoke(req, timeout=30)
        return info.value.code(), info.value.details()

    good = tensors.to_proto(zoo.MODELS["imagerecognition"].example_input())
    assert code(gateway_pb2.InvokeRequest(app="nope", input=good))[0] == grpc.StatusCode.NOT_FOUND
    assert code(gateway_pb2.InvokeRequest(app="", input=good))[0] == grpc.StatusCode.INVALID_ARGUMENT
    c, d = code(gateway_pb2.InvokeRequest(app="image-query"))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and d.startswith("input:")
    wrong = tensors.to_proto(np.zeros((2, 3), dtype=np.float32))
    c, d = code(gateway_pb2.InvokeRequest(app="image-query", input=wrong))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "input:" in d
    broken = common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_FLOAT32, shape=[4], data=b"1")
    assert (
        code(gateway_pb2.InvokeRequest(app="image-query", input=broken))[0]
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_apps_list_get_delete(gw: gateway_pb2_grpc.GatewayStub, registered: list[appspec.AppSpec]) -> None:
    tmp = appspec.AppSpec("tmp-app", 1.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
    gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(tmp)), timeout=5)
    names = [a.spec.name for a in gw.ListApps(gateway_pb2.ListAppsRequest(), timeout=5).apps]
    assert "tmp-app" in names and "image-query" in names
    assert gw.GetApp(gateway_pb2.GetAppRequest(name="tmp-app"), timeout=5).app.spec.sla.seconds == 1
    gw.DeleteApp(gateway_pb2.DeleteAppRequest(name="tmp-app"), timeout=5)
    for rpc, req in (
        (gw.GetApp, gateway_pb2.GetAppRequest(name="tmp-app")),
        (gw.DeleteApp, gateway_pb2.DeleteAppRequest(name="tmp-app")),
    ):
        with pytest.raises(grpc.RpcError) as info:
            rpc(req, timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_status_and_cost(
    stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub, registered: list[appspec.AppSpec]
) -> None:
    x = tensors.to_proto(zoo.MODELS["imagerecognition"].example_input())
    for _ in range(2):  # the second one is warm: its stage latencies are recorded
        gw.Invoke(gateway_pb2.InvokeRequest(app="image-query", input=x), timeout=180)
    out = subprocess.run(
        [sys.executable, "-m", "smiless", "status", "--json", "--gateway", stack.addresses["gateway"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert {s["name"]: s["status"] for s in doc["services"]} == dict.fromkeys(EXPECTED_SERVICE, "SERVING")
    apps = {a["name"]: a for a in doc["apps"]}
    assert {"image-query", "voice-assistant", "amber-alert"} <= set(apps)
    assert int(apps["image-query"]["invocations"]) >= 1, "invocations are recorded (after the buffered flush)"
    samples = asyncio.run(_stage_samples(str(stack.redis_url), "imagerecognition", "cpu-1"))
    assert samples and all(x.batch == 1 and 0 < x.seconds < 10 for x in samples), (
        "warm stage latencies recorded"
    )
    cost = gw.GetCostReport(gateway_pb2.GetCostReportRequest(app="image-query"), timeout=10)
    assert cost.total_cost > 0 and {f.function for f in cost.apps[0].functions} == {"ir", "bert", "qa"}


async def _stage_samples(url: str, model: str, config: str) -> list[StageLatency]:
    store = Store(url)
    try:
        return await store.stage_latencies(model, config, 100)
    finally:
        await store.close()


def test_other_services_validate(stack: LocalStack, registered: list[appspec.AppSpec]) -> None:
    with grpc.insecure_channel(stack.addresses["profiler"]) as ch:
        prof = profiler_pb2_grpc.ProfilerStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            prof.GetProfile(profiler_pb2.GetProfileRequest(model="no-such-model"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(stack.addresses["predictor"]) as ch:
        pred = predictor_pb2_grpc.PredictorStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            pred.GetHistory(predictor_pb2.GetHistoryRequest(app="no-such-app"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        hist = pred.GetHistory(predictor_pb2.GetHistoryRequest(app="image-query"), timeout=5)
        assert hist.app == "image-query"
    with grpc.insecure_channel(stack.addresses["optimizer"]) as ch:
        opt = optimizer_pb2_grpc.OptimizerStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            opt.EnsureInstance(
                optimizer_pb2.EnsureInstanceRequest(app="image-query", function="nope"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "function" in info.value.details()


async def _start_and_watch_lifetime(stack: LocalStack, app: str) -> list[common_pb2.Instance]:
    """Every version of the app's lifetime record seen while one on-demand start runs."""
    assert stack.redis_url is not None
    store = Store(stack.redis_url)
    seen: list[common_pb2.Instance] = []
    done = asyncio.Event()

    async def watch() -> None:
        # Stopped by an event, not by cancelling: a cancellation landing in a Redis call can
        # be lost on Python 3.11 (see smiless.aio.stop_task), and this loop would run forever.
        while not done.is_set():
            for i in await store.lifetimes():
                if i.app == app and (not seen or seen[-1] != i):
                    seen.append(i)
            await asyncio.sleep(0.01)

    try:
        async with grpc.aio.insecure_channel(stack.addresses["optimizer"]) as ch:
            watcher = asyncio.create_task(watch())
            await optimizer_pb2_grpc.OptimizerStub(ch).EnsureInstance(
                optimizer_pb2.EnsureInstanceRequest(app=app, function="m"), timeout=120
            )

            async def saw_ready() -> bool:
                return any(i.state == common_pb2.INSTANCE_STATE_READY for i in seen)

            await wait_until(saw_ready, 10, "the lifetime record written once the instance is ready")
            done.set()
            await asyncio.wait_for(watcher, timeout=10)
    finally:
        await store.close()
    return seen


def test_a_lifetime_start_never_moves(stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub) -> None:
    """A cost report taken while an instance starts counts from its start command; the record
    written once it is ready must keep that start, or a later report would take cost back."""
    spec = appspec.AppSpec("lifetime-start", 2.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
    gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10)
    try:
        seen = asyncio.run(_start_and_watch_lifetime(stack, spec.name))
    finally:
        gw.DeleteApp(gateway_pb2.DeleteAppRequest(name=spec.name), timeout=10)
    states = [i.state for i in seen]
    assert states[0] == common_pb2.INSTANCE_STATE_STARTING and common_pb2.INSTANCE_STATE_READY in states
    assert {i.id for i in seen} == {seen[0].id}
    assert {i.started_at.ToNanoseconds() for i in seen} == {seen[0].started_at.ToNanoseconds()}
