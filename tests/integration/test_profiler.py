"""The profiler over real gRPC, real Redis and real worker processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from smiless import zoo
from smiless.catalogue import Kind
from smiless.stack import LocalStack, free_port
from smiless.store import Store
from smiless.v1 import common_pb2, profiler_pb2, profiler_pb2_grpc

SMALL = {"model": "tiny-mlp", "configs": ["cpu-1"], "cold_starts": 2, "batch_sizes": [1, 2, 4]}


@pytest.fixture(scope="module")
def prof(stack: LocalStack) -> Iterator[profiler_pb2_grpc.ProfilerStub]:
    with grpc.insecure_channel(stack.addresses["profiler"]) as ch:
        yield profiler_pb2_grpc.ProfilerStub(ch)


def _run(prof: profiler_pb2_grpc.ProfilerStub, **kw: object) -> list[profiler_pb2.ProfileFunctionResponse]:
    req = profiler_pb2.ProfileFunctionRequest(**{**SMALL, **kw})  # type: ignore[arg-type]
    return list(prof.ProfileFunction(req, timeout=300))


@pytest.mark.e2e
def test_profile_is_measured_fitted_stored_and_versioned(prof: profiler_pb2_grpc.ProfilerStub) -> None:
    msgs = _run(prof, force=True)
    assert msgs[-1].step == "stored" and msgs[-1].done == msgs[-1].total == 2 + 3
    assert [m.done for m in msgs] == sorted(m.done for m in msgs), "progress only moves forward"
    (p,) = msgs[-1].profiles
    assert p.model == "tiny-mlp" and list(p.configs) == ["cpu-1"] and p.version >= 1
    names = [ph.name for ph in p.init_phases]
    assert {"runtime_import", "model_load", "warmup", "serve_ready"} <= set(names)
    assert all(ph.mean.ToNanoseconds() > 0 for ph in p.init_phases)
    assert sorted(pt.batch_size for pt in p.points) == [1, 2, 4]
    assert all(
        pt.repetitions >= 10 and pt.p10.ToNanoseconds() <= pt.median.ToNanoseconds() for pt in p.points
    )
    assert p.inference.gamma > 0 and p.inference.mape >= 0
    assert any("only one resource level" in n for n in p.notes), "a single config is reported as such"
    got = prof.GetProfile(profiler_pb2.GetProfileRequest(model="tiny-mlp"), timeout=10)
    assert got.profiles[0].version == p.version
    again = _run(prof, force=True)[-1].profiles[0]
    assert again.version == p.version + 1


@pytest.mark.parametrize(
    ("kw", "code", "field"),
    [
        ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "model"),
        ({"model": ""}, grpc.StatusCode.INVALID_ARGUMENT, "model"),
        ({"configs": ["cpu-3"]}, grpc.StatusCode.INVALID_ARGUMENT, "configs[0]"),
        ({"configs": ["cpu-1", "cpu-16"]}, grpc.StatusCode.FAILED_PRECONDITION, "configs[1]"),
        ({"configs": ["gpu-10"]}, grpc.StatusCode.FAILED_PRECONDITION, "configs[0]"),
        ({"batch_sizes": [1, 128]}, grpc.StatusCode.INVALID_ARGUMENT, "batch_sizes[1]"),
        ({"cold_starts": 1}, grpc.StatusCode.INVALID_ARGUMENT, "cold_starts"),
    ],
)
@pytest.mark.e2e
def test_bad_requests(
    prof: profiler_pb2_grpc.ProfilerStub, kw: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _run(prof, **kw)
    assert info.value.code() == code
    assert info.value.details().startswith(field)


@pytest.mark.e2e
def test_second_run_refused_then_interrupted_run_resumes(prof: profiler_pb2_grpc.ProfilerStub) -> None:
    req = profiler_pb2.ProfileFunctionRequest(**{**SMALL, "model": "translation", "force": True})  # type: ignore[arg-type]
    first = prof.ProfileFunction(req, timeout=300)
    progress = next(first)
    assert progress.total == 5
    with pytest.raises(grpc.RpcError) as info:
        list(prof.ProfileFunction(req, timeout=60))
    assert info.value.code() == grpc.StatusCode.ABORTED
    while progress.done < 2:  # let two steps finish, then interrupt the run
        progress = next(first)
    first.cancel()
    # The server stops the interrupted run's worker before it releases the lock: retry while
    # the run is still winding down, as a client would.
    deadline = time.monotonic() + 60
    while True:
        try:
            resumed = list(prof.ProfileFunction(req, timeout=300))
            break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ABORTED or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert resumed[0].step == "resumed" and resumed[0].done >= 2
    assert resumed[-1].profiles[0].model == "translation"


def test_profiles_survive_restarts_of_profiler_and_redis(tmp_path: Path) -> None:
    from tests.conftest import RedisServer
    from tests.integration.test_shell import _serve, _wait

    redis = RedisServer(tmp_path)
    redis.start()
    stored = profiler_pb2.Profile(model="distilbert", kind=common_pb2.HARDWARE_KIND_CPU, version=7)
    asyncio.run(_put(redis.url, stored))
    port = free_port()
    addr = f"127.0.0.1:{port}"
    proc = _serve("profiler", redis.url, port)
    try:
        _wait(addr, "SERVING")
        proc.terminate()
        assert proc.wait(30) == 0
        redis.stop()
        redis.start()  # same data dir: the append-only file brings the profile back
        proc = _serve("profiler", redis.url, port)
        _wait(addr, "SERVING")
        with grpc.insecure_channel(addr) as ch:
            got = profiler_pb2_grpc.ProfilerStub(ch).GetProfile(
                profiler_pb2.GetProfileRequest(model="distilbert")
            )
        assert got.profiles[0].version == 7
    finally:
        proc.terminate()
        proc.wait(30)
        redis.stop()


async def _put(url: str, profile: profiler_pb2.Profile) -> None:
    store = Store(url)
    await store.put_profile(profile, "cpu")
    await store.close()


async def test_online_refit_follows_the_gateways_latencies(redis_url: str) -> None:
    """Warm latencies recorded by the gateway drift 10x from the profile: the profiler
    stores a refitted version that says so; without drift it stores nothing."""
    from smiless.config import Settings
    from smiless.services.profiler.service import ProfilerService
    from smiless.store import StageLatency

    store = Store(redis_url)
    profile = profiler_pb2.Profile(
        model="tiny-mlp", kind=common_pb2.HARDWARE_KIND_CPU, configs=["cpu-1"], version=3
    )
    profile.inference.CopyFrom(profiler_pb2.InferenceModel(lam=0.001, alpha=0.0, beta=1.0, gamma=0.001))
    for b, t in ((1, 0.002), (2, 0.003), (4, 0.005)):
        profile.points.add(config="cpu-1", batch_size=b).median.FromNanoseconds(round(t * 1e9))
    await store.put_profile(profile, "cpu")
    service = ProfilerService(Settings(redis_url=redis_url), store)
    await store.record_stage_latencies([StageLatency("tiny-mlp", "cpu-1", 1, 0.0021)] * 20, keep=1000)
    assert await service.refit("tiny-mlp") == [], "within the drift threshold: no refit"
    await store.record_stage_latencies([StageLatency("tiny-mlp", "cpu-1", 1, 0.02)] * 200, keep=1000)
    (new,) = await service.refit("tiny-mlp")
    assert new.version == 4 and any(n.startswith("online refit") for n in new.notes)
    got = (await store.get_profiles("tiny-mlp"))["cpu"]
    assert got.version == 4
    old_t1 = 0.001 * 1 + 0.001
    new_t1 = got.inference.lam * (got.inference.alpha + got.inference.beta) + got.inference.gamma
    assert new_t1 > 3 * old_t1, "the refit moved towards the observed 20 ms"
    await service.stop()
    await store.close()


async def test_fit_above_the_mape_threshold_is_refused_unless_forced(redis_url: str) -> None:
    """Measurements a linear model cannot follow (quadratic in B): refused without force,
    stored with a note with force."""
    import json

    from smiless.catalogue import load_catalogue
    from smiless.config import Settings
    from smiless.server import RpcError
    from smiless.services.profiler import measure
    from smiless.services.profiler.service import ProfilerService

    store = Store(redis_url)
    service = ProfilerService(Settings(redis_url=redis_url, profile_mape_threshold=0.05), store)
    configs = {"cpu-1": load_catalogue()["cpu-1"]}
    steps = measure.plan_steps(["cpu-1"], 2, [1, 2, 4, 8, 16])
    results = {}
    for s in steps:
        if s.kind == "cold":
            results[s.key] = json.dumps({"runtime_import": 1.0 + 0.1 * s.index, "model_load": 0.1})
        else:
            t = 0.001 * s.index**2 + 0.001
            results[s.key] = json.dumps({"median": t, "p10": t, "p90": t, "reps": 10.0})
    spec = zoo.MODELS["tiny-mlp"]
    with pytest.raises(RpcError) as info:
        await service._fit_and_store(spec, Kind.CPU, configs, steps, results, force=False)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and "exceeds 5%" in info.value.message
    assert await store.get_profiles("tiny-mlp") == {}, "nothing stored"
    stored = await service._fit_and_store(spec, Kind.CPU, configs, steps, results, force=True)
    assert any("stored with force" in n for n in stored.notes)
    await service.stop()
    await store.close()
