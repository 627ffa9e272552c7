"""The Redis store against a real redis-server."""

from __future__ import annotations

import time

import pytest

from smiless import appspec
from smiless.store import InvocationRecord, Store
from smiless.v1 import common_pb2, gateway_pb2, profiler_pb2


def _app(name: str = "image-query") -> gateway_pb2.App:
    spec = appspec.load_file(appspec.EXAMPLES_DIR / f"{name}.yaml")
    return gateway_pb2.App(spec=appspec.to_proto(spec), version=1)


async def test_apps_crud(redis_url: str) -> None:
    store = Store(redis_url)
    assert await store.create_app(_app())
    assert not await store.create_app(_app()), "create must not overwrite"
    got = await store.get_app("image-query")
    assert got is not None and got.spec.name == "image-query" and len(got.spec.functions) == 3
    await store.put_app(_app("voice-assistant"))
    assert [a.spec.name for a in await store.list_apps()] == ["image-query", "voice-assistant"]
    assert await store.delete_app("image-query")
    assert not await store.delete_app("image-query")
    assert await store.get_app("image-query") is None
    await store.close()


async def test_arrivals_range_and_retention(redis_url: str) -> None:
    store = Store(redis_url)
    now = time.time()
    await store.record_arrivals("a", [now - 100, now - 50, now - 1], retention_s=3600)
    assert len(await store.arrivals("a")) == 3
    assert await store.arrivals("a", count=2) == (await store.arrivals("a"))[:2]
    window = await store.arrivals("a", start=now - 60, end=now)
    assert window == pytest.approx([now - 50, now - 1], abs=1e-3)
    await store.close()


async def test_instances_registry_and_lifetimes(redis_url: str) -> None:
    store = Store(redis_url)
    inst = common_pb2.Instance(
        id="i1", app="a", function="f", state=common_pb2.INSTANCE_STATE_READY, price_per_hour=1
    )
    await store.put_instance(inst)
    assert [i.id for i in await store.list_instances()] == ["i1"]
    inst.state = common_pb2.INSTANCE_STATE_STOPPED
    await store.put_instance(inst)
    assert await store.list_instances() == []
    lives = await store.lifetimes()
    assert len(lives) == 1 and lives[0].state == common_pb2.INSTANCE_STATE_STOPPED
    await store.close()


async def test_invocations_and_profiles(redis_url: str) -> None:
    store = Store(redis_url)
    now = time.time()
    recs = [InvocationRecord(now - i, 100.0 + i, i % 2 == 0, i == 0, f"r{i}") for i in range(5)]
    await store.record_invocations("a", list(reversed(recs)), keep=1000)
    got = await store.invocations("a")
    assert [r.request_id for r in got] == ["r4", "r3", "r2", "r1", "r0"]
    assert got[-1].cold and got[-1].sla_met and not got[-2].sla_met
    await store.put_profile(profiler_pb2.Profile(model="m", version=1), "cpu")
    await store.put_profile(profiler_pb2.Profile(model="m", version=2), "cpu")
    assert (await store.get_profiles("m"))["cpu"].version == 2
    await store.close()


async def test_ping_false_when_unreachable() -> None:
    from smiless.stack import free_port

    store = Store(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    assert not await store.ping()
    await store.close()
