"""The controller on the real stack: an app with a regular arrival pattern gets its instance
pre-warmed before each predicted arrival and stopped after serving it, and the lifetimes in
Redis say so."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from smiless import appspec, profiles, tensors, zoo
from smiless.catalogue import Kind
from smiless.config import SERVICE_NAMES, Settings
from smiless.policy.costmodel import Forecast
from smiless.policy.profile import FunctionProfile, InferenceModel, InitModel
from smiless.policy.search import fast_plan
from smiless.services.optimizer.controller import AppState
from smiless.services.optimizer.service import OptimizerService
from smiless.stack import LocalStack, free_port
from smiless.store import Store
from smiless.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    optimizer_pb2,
    optimizer_pb2_grpc,
    predictor_pb2,
    predictor_pb2_grpc,
    profiler_pb2,
)

PERIOD_S = 12.0
APP = "metronome"


def _profile() -> profiler_pb2.Profile:
    """A stored profile as the profiler would write it: a process worker of tiny-mlp takes
    about 2-3 s to start on a quiet machine here, over 5 s on a loaded one; planned at
    mu + 3 sigma = 7.5 s, which the period leaves room for."""
    p = profiler_pb2.Profile(
        model="tiny-mlp", kind=profiles.KIND_TO_PROTO[Kind.CPU], configs=["cpu-1", "cpu-2"]
    )
    p.init_phases.extend(profiles.init_to_proto(InitModel.single(3.0, 1.5)))
    p.inference.CopyFrom(profiles.inference_to_proto(InferenceModel(0.002, 0.5, 0.5, 0.002), 0.05))
    return p


async def _setup(redis_url: str) -> None:
    store = Store(redis_url)
    try:
        await store.put_profile(_profile(), "cpu")
    finally:
        await store.close()


async def _lifetimes(redis_url: str) -> list[common_pb2.Instance]:
    store = Store(redis_url)
    try:
        return [i for i in await store.lifetimes() if i.app == APP]
    finally:
        await store.close()


def test_prewarmed_before_predicted_arrivals_and_stopped_after(stack: LocalStack) -> None:
    assert stack.redis_url is not None
    asyncio.run(_setup(stack.redis_url))
    spec = appspec.AppSpec(APP, 2.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
    x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
    with (
        grpc.insecure_channel(stack.addresses["gateway"]) as gch,
        grpc.insecure_channel(stack.addresses["predictor"]) as pch,
        grpc.insecure_channel(stack.addresses["optimizer"]) as och,
    ):
        gw = gateway_pb2_grpc.GatewayStub(gch)
        gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10)
        # A history of one arrival every PERIOD_S, the last one just now.
        last = time.time() - 0.2
        req = predictor_pb2.LoadHistoryRequest(app=APP, replace=True)
        for k in range(9, -1, -1):
            req.arrivals.add().FromNanoseconds(round((last - k * PERIOD_S) * 1e9))
        predictor_pb2_grpc.PredictorStub(pch).LoadHistory(req, timeout=10)
        plan = optimizer_pb2_grpc.OptimizerStub(och).Plan(optimizer_pb2.PlanRequest(app=APP), timeout=10).plan
        fp = plan.functions[0]
        assert fp.mode == common_pb2.COLD_START_MODE_PREWARM and fp.stop_after_serving, plan
        # the planned init is the profile's mu + 3 sigma, or longer where this host's starts were
        assert fp.init.ToNanoseconds() / 1e9 >= 7.5 - 1e-6, plan
        arrivals: list[float] = []
        for _ in range(2):
            last += PERIOD_S
            time.sleep(max(0.0, last - time.time()))
            sent = time.time()
            resp = gw.Invoke(gateway_pb2.InvokeRequest(app=APP, input=x), timeout=30)
            arrivals.append(sent)
            assert not resp.stages[0].cold, f"the stage met a cold instance at {sent}: {resp}"
        deadline = time.time() + 10
        while True:  # the last instance is stopped once it has served
            lives = asyncio.run(_lifetimes(stack.redis_url))
            served = [i for i in lives if i.stop_reason == "served"]
            if len(served) >= 2 or time.time() > deadline:
                break
            time.sleep(0.2)
    prewarmed = [i for i in lives if i.start_reason == "pre-warm"]
    assert len(prewarmed) >= 2, lives
    # Each carries the batch it was started for, the gateway's bound on it.
    assert all(i.batch == fp.batch_size for i in prewarmed), [(i.id, i.batch) for i in prewarmed]
    for at in arrivals:
        used = [
            i
            for i in prewarmed
            if i.ready_at.ToNanoseconds() / 1e9 <= at
            and i.stopped_at.ToNanoseconds() / 1e9 > at
            and i.stop_reason == "served"
        ]
        assert used, f"no pre-warmed instance was ready at {at} and stopped after serving: {lives}"
        started = min(i.started_at.ToNanoseconds() / 1e9 for i in used)
        assert started > at - PERIOD_S, "started for this arrival, not left running from the last"
    assert all(i.served >= 1 for i in served)


def test_an_arrival_at_max_instances_evicts_the_longest_idle_instance(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """One instance fits this host: an arrival for another app stops the idle one first."""
    env = {"SMILESS_MAX_INSTANCES": "1", "SMILESS_CONTROLLER": "false"}
    s = LocalStack(
        Path(tmp_path_factory.mktemp("cap")),
        ports={n: free_port() for n in SERVICE_NAMES},
        extra_env=env,
    )
    s.start()
    try:
        assert s.redis_url is not None
        x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
        with grpc.insecure_channel(s.addresses["gateway"]) as gch:
            gw = gateway_pb2_grpc.GatewayStub(gch)
            for name in ("first", "second"):
                spec = appspec.AppSpec(name, 2.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
                gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec)), timeout=10)
                gw.Invoke(gateway_pb2.InvokeRequest(app=name, input=x), timeout=60)
        lives = {i.app: i for i in asyncio.run(_all_lifetimes(s.redis_url))}
        assert lives["first"].state == common_pb2.INSTANCE_STATE_STOPPED
        assert lives["first"].stop_reason == "evicted for an arrival"
        assert lives["first"].served == 1
        assert lives["second"].state == common_pb2.INSTANCE_STATE_READY
    finally:
        s.stop()


async def _all_lifetimes(redis_url: str) -> list[common_pb2.Instance]:
    store = Store(redis_url)
    try:
        return await store.lifetimes()
    finally:
        await store.close()


def test_registration_says_when_the_sla_is_out_of_reach(stack: LocalStack) -> None:
    assert stack.redis_url is not None
    asyncio.run(_setup(stack.redis_url))  # tiny-mlp: ~6 ms warm; an SLA of 1 ms cannot be met
    with grpc.insecure_channel(stack.addresses["gateway"]) as gch:
        gw = gateway_pb2_grpc.GatewayStub(gch)
        tight = appspec.AppSpec("hurried", 0.001, (appspec.FunctionSpec("m", "tiny-mlp"),))
        resp = gw.RegisterApp(
            gateway_pb2.RegisterAppRequest(app=appspec.to_proto(tight), replace=True), timeout=30
        )
        assert [w for w in resp.warnings if w.startswith("sla_s: SLA unreachable")], resp.warnings
        fine = appspec.AppSpec("relaxed", 2.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
        resp = gw.RegisterApp(
            gateway_pb2.RegisterAppRequest(app=appspec.to_proto(fine), replace=True), timeout=30
        )
        assert not resp.warnings
        unprofiled = appspec.AppSpec("unknown-cost", 2.0, (appspec.FunctionSpec("m", "humanactivitypose"),))
        resp = gw.RegisterApp(
            gateway_pb2.RegisterAppRequest(app=appspec.to_proto(unprofiled), replace=True), timeout=30
        )
        assert len(resp.warnings) == 1 and "no profile for m (humanactivitypose)" in resp.warnings[0], (
            resp.warnings
        )


def test_a_deleted_app_is_forgotten_by_the_controller(redis_url: str) -> None:
    """Real Redis: the controller keeps an app's plan and bookkeeping while the app is
    registered, and drops all of it once the app is deleted, so deleted apps do not
    accumulate (no predictor listens: the plan is one made while it did)."""

    async def run() -> None:
        store = Store(redis_url)
        settings = Settings(
            redis_url=redis_url, predictor_addr=f"127.0.0.1:{free_port()}", worker_backend="process"
        )
        svc = OptimizerService(settings, store)
        ctl = svc.controller
        try:
            spec = appspec.AppSpec("gone", 4.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
            await store.put_app(gateway_pb2.App(spec=appspec.to_proto(spec), version=1))
            prof = {
                "m": {
                    "cpu": FunctionProfile(
                        "tiny-mlp", Kind.CPU, InferenceModel(1.0, 0.1, 0.0, 0.01), InitModel.single(1.0, 0.1)
                    )
                }
            }
            plan = fast_plan(["m"], [], 4.0, prof, svc.catalogue, Forecast(10.0))
            svc.planner.plans["gone"] = plan  # planned while the predictor was up
            ctl.apps["gone"] = AppState(key=(1,), planned_at=time.time(), previous=plan)
            await ctl.tick()
            assert svc.planner.latest("gone") is plan and "gone" in ctl.apps  # still registered
            assert await store.delete_app("gone")
            await ctl.tick()
            assert svc.planner.latest("gone") is None and "gone" not in ctl.apps
        finally:
            await svc.stop()
            await store.close()

    asyncio.run(run())
