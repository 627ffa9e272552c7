"""The ray backend on a real three-node Ray cluster on this machine (Ray's own multi-node test
utility; the nodes declare logical CPUs, memory and one GPU beyond what the host has):
placement by resources and spread, a worker answering Infer, drain and kill, re-adoption by a
restarted optimizer, node loss, and an unreachable cluster address."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest

from smiless import tensors
from smiless.backends.base import BackendError, ModelError
from smiless.backends.process import free_port
from smiless.catalogue import load_catalogue
from smiless.v1 import worker_pb2, worker_pb2_grpc

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from smiless.backends.ray import ACTOR_LOST, PREFIX, RayBackend  # noqa: E402

pytestmark = pytest.mark.e2e

GIB = 1024**3
CATALOGUE = load_catalogue()
MODEL = "tiny-mlp"
# Every process of the cluster on loopback, with the least object store Ray accepts.
NODE_ARGS: dict[str, Any] = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 1024 * 1024}


@dataclass
class RayCluster:
    cluster: Cluster
    address: str
    head: str  # node ids: 8 CPUs, 32 GiB
    small: Any  # the node handle of the 4-CPU, 16 GiB node (test_node_loss removes it)
    gpu: str  # 4 CPUs, one GPU, 16 GiB

    @property
    def small_id(self) -> str:
        return str(self.small.node_id)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with pytest.MonkeyPatch.context() as env:
        # Ray replaces a loopback address with the host's outward IP unless told it runs on
        # one machine; the cluster must stay on 127.0.0.1. Its processes read the variable;
        # this one imported Ray before, so its constant is set too.
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
        env.delenv("RAY_ADDRESS", raising=False)
        c = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 8, "memory": 32 * GIB, "include_dashboard": False, **NODE_ARGS},
        )
        try:
            small = c.add_node(num_cpus=4, memory=16 * GIB, **NODE_ARGS)
            gpu = c.add_node(num_cpus=4, num_gpus=1, memory=16 * GIB, **NODE_ARGS)
            c.wait_for_nodes()
            yield RayCluster(c, c.address, c.head_node.node_id, small, gpu.node_id)
        finally:
            ray.shutdown()
            c.shutdown()


@pytest.fixture
async def backend(cluster: RayCluster) -> AsyncIterator[RayBackend]:
    b = RayBackend(
        cluster.address, start_timeout_s=120, stop_timeout_s=5, namespace=f"t-{uuid.uuid4().hex[:8]}"
    )
    yield b
    await b.close()


async def infer(address: str) -> np.ndarray:
    x = np.arange(16, dtype=np.float32)
    async with grpc.aio.insecure_channel(address) as ch:
        resp = await worker_pb2_grpc.WorkerStub(ch).Infer(
            worker_pb2.InferRequest(inputs=[tensors.to_proto(x)]), timeout=30
        )
    return tensors.from_proto(resp.outputs[0])


async def answers(address: str) -> bool:
    try:
        await infer(address)
    except grpc.aio.AioRpcError:
        return False
    return True


def free_on(node_id: str, resource: str) -> float:
    from ray._private import state

    return float(state.available_resources_per_node().get(node_id, {}).get(resource, 0.0))


def actor_names() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]


async def until(predicate: Any, timeout_s: float = 30.0) -> bool:
    """Poll a blocking predicate (Ray's resource view lags its scheduler by a moment)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.2)
    return False


def test_the_cluster_is_on_loopback(cluster: RayCluster) -> None:
    RayBackend(cluster.address, namespace="t-loopback")  # connects this process as a driver
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 3
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}


def test_unreachable_address_fails_fast_naming_it() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=f"ray cluster at {address} unreachable"):
        RayBackend(address, connect_timeout_s=3)
    assert time.monotonic() - t0 < 3


async def test_placement_follows_resources_and_spreads(cluster: RayCluster, backend: RayBackend) -> None:
    cpu4 = CATALOGUE["cpu-4"]
    first = await backend.start("f-1", MODEL, cpu4, app="a", function="f")
    second = await backend.start("f-2", MODEL, cpu4, app="a", function="f")
    nodes = {backend.actors["f-1"].node, backend.actors["f-2"].node}
    # best fit put the first on the 4-CPU node, spread the second on the head; neither on
    # the GPU node, whose cores GPU configs need
    assert nodes == {cluster.small_id, cluster.head}
    assert await until(lambda: free_on(cluster.head, "CPU") == 4 and free_on(cluster.small_id, "CPU") == 0)
    assert free_on(cluster.head, "memory") == 32 * GIB - 8192 * 1024 * 1024
    # (b) each answers Infer over gRPC at its node's address
    for w in (first, second):
        assert w.address.startswith("127.0.0.1:")
        assert (await infer(w.address)).shape == (16,)
        assert set(w.phases) == {
            "scheduling",
            "process_start",
            "runtime_import",
            "model_load",
            "warmup",
            "serve_ready",
        }
        assert abs(sum(w.phases.values()) - (w.ready_at - w.spawned_at)) < 0.01
    # no node has 8 CPUs free now: refused at once, with each node's free resources
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=r"no ray node has room for cpu-8 .*4/8 CPU"):
        await backend.start("big", MODEL, CATALOGUE["cpu-8"], function="g")
    assert time.monotonic() - t0 < 5
    # a GPU share lands on the GPU node and holds its fraction of the GPU
    await backend.start("g-1", MODEL, CATALOGUE["gpu-20"], function="g")
    assert backend.actors["g-1"].node == cluster.gpu
    assert await until(lambda: abs(free_on(cluster.gpu, "GPU") - 0.8) < 1e-6)
    capacity = await backend.capacity()
    assert capacity.fits(CATALOGUE["cpu-4"]) == 1 and capacity.fits(CATALOGUE["gpu-90"]) == 0


async def test_restart_readopts_then_stop_drains_and_kills(cluster: RayCluster, backend: RayBackend) -> None:
    started = await backend.start("s-1", MODEL, CATALOGUE["cpu-1"], app="a", function="s")
    # (d) an optimizer restarted: a fresh backend object in the same namespace
    fresh = RayBackend(cluster.address, namespace=backend.namespace)
    adopted = await fresh.adopt()
    assert [(w.instance_id, w.address, w.model, w.config, w.running) for w in adopted] == [
        ("s-1", started.address, MODEL, "cpu-1", True)
    ]
    assert await answers(started.address), "the adopted worker keeps serving"
    assert fresh.actors["s-1"].node == backend.actors["s-1"].node
    # (c) stop: the worker drains (SIGTERM), then the actor is killed and its CPU freed
    node = fresh.actors["s-1"].node
    before = free_on(node, "CPU")
    await fresh.stop("s-1")
    assert not await answers(started.address)
    assert await until(lambda: PREFIX + "s-1" not in actor_names())
    assert await until(lambda: free_on(node, "CPU") == before + 1)
    assert await fresh.adopt() == []
    backend.actors.clear()  # stopped through the other object


async def test_adopt_kills_an_actor_whose_worker_is_gone(cluster: RayCluster, backend: RayBackend) -> None:
    started = await backend.start("d-1", MODEL, CATALOGUE["cpu-1"], function="d")
    code = await backend.actors["d-1"].handle.stop.remote(5)  # the worker exits; the actor lives
    assert code == 0, "a drained worker exits 0"
    fresh = RayBackend(cluster.address, namespace=backend.namespace)
    adopted = await fresh.adopt()
    assert [(w.instance_id, w.running) for w in adopted] == [("d-1", False)]
    assert await until(lambda: PREFIX + "d-1" not in actor_names())
    assert not await answers(started.address)
    assert await backend.wait_exit("d-1") == 0


async def test_bad_starts_are_refused_and_leave_no_actor(cluster: RayCluster, backend: RayBackend) -> None:
    with pytest.raises(ModelError, match="model"):
        await backend.start("bad-1", "no-such-model", CATALOGUE["cpu-1"])
    # an actor Ray cannot have running in time (its process alone takes longer): killed
    hurried = RayBackend(cluster.address, start_timeout_s=0.05, namespace=backend.namespace)
    with pytest.raises(BackendError, match=r"not running on node \w+ within 0.05 s"):
        await hurried.start("late-1", MODEL, CATALOGUE["cpu-1"], function="late")
    assert hurried.actors == {}
    assert await until(lambda: PREFIX + "late-1" not in actor_names())
    assert await until(lambda: free_on(cluster.small_id, "CPU") == 4), "its CPU is free again"


async def test_node_loss_fails_its_instances(cluster: RayCluster, backend: RayBackend) -> None:
    """Last in the module: the 4-CPU node goes away for good."""
    assert await until(lambda: free_on(cluster.small_id, "CPU") == 4)
    lost = await backend.start("n-1", MODEL, CATALOGUE["cpu-4"], function="n")
    kept = await backend.start("n-2", MODEL, CATALOGUE["cpu-1"], function="n")
    assert backend.actors["n-1"].node == cluster.small_id != backend.actors["n-2"].node
    worker_pid = (await backend.actors["n-1"].handle.info.remote())["pid"]
    assert os.path.exists(f"/proc/{worker_pid}")
    await asyncio.to_thread(cluster.cluster.remove_node, cluster.small)
    code = await asyncio.wait_for(backend.wait_exit("n-1"), 60)
    assert code == ACTOR_LOST
    assert await until(lambda: not os.path.exists(f"/proc/{worker_pid}"), 10), "the worker died with it"
    assert not await answers(lost.address)
    assert await answers(kept.address), "the other node's instance is untouched"
    assert cluster.small_id not in {n.id for n in (await backend.capacity()).nodes}
