"""Real worker containers through the docker backend.

These need a Docker engine and the worker image (`scripts/install-docker.sh`,
`scripts/build-images.sh`). Without them the tests skip, unless SMILESS_REQUIRE_DOCKER=1
(CI sets it), where a missing engine or image is a failure.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from smiless import tensors, zoo
from smiless.backends.base import BackendError, ModelError
from smiless.catalogue import load_catalogue
from smiless.v1 import worker_pb2, worker_pb2_grpc
from tests.torchscript_models import Affine, Busy, save
from tests.waiting import until_in_flight

IMAGE = os.environ.get("SMILESS_WORKER_IMAGE", "smiless-worker:latest")


def _docker_ready() -> str | None:
    try:
        import docker

        client = docker.from_env()
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


_why = _docker_ready()
if _why is not None:
    if os.environ.get("SMILESS_REQUIRE_DOCKER") == "1":
        raise RuntimeError(f"SMILESS_REQUIRE_DOCKER=1 but docker or {IMAGE} is unavailable: {_why}")
    pytest.skip(f"docker or {IMAGE} unavailable: {_why}", allow_module_level=True)

from smiless.backends.docker import LABEL, OWNER_LABEL, DockerBackend  # noqa: E402

OWNER = f"test-{uuid.uuid4().hex[:8]}"  # this run's containers only: others may share the engine


def _smiless_containers() -> list[str]:
    import docker

    labels = [LABEL, f"{OWNER_LABEL}={OWNER}"]
    return [str(c.name) for c in docker.from_env().containers.list(all=True, filters={"label": labels})]


@pytest.fixture
async def backend() -> AsyncIterator[DockerBackend]:
    b = DockerBackend(IMAGE, start_timeout_s=120, stop_timeout_s=5, owner=OWNER)
    yield b
    await b.close()


@pytest.mark.parametrize("config", ["cpu-1", "cpu-2"])
async def test_container_per_config_serves_batches(backend: DockerBackend, config: str) -> None:
    cfg = load_catalogue()[config]
    w = await backend.start(f"test-{config}", "imagerecognition", cfg)
    assert w.address.startswith("127.0.0.1:"), "published on loopback only"
    assert {"container_create", "container_start", "runtime_import", "model_load", "warmup"} <= set(w.phases)
    container = backend.containers[w.instance_id]
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == int(cfg.cores * 1e9) and host["Memory"] == cfg.memory_mb * 1024 * 1024
    assert container.attrs["Config"]["User"] not in ("", "root", "0"), "workers do not run as root"
    assert "OMP_WAIT_POLICY=PASSIVE" in container.attrs["Config"]["Env"], "no spinning on the CPU quota"
    spec = zoo.MODELS["imagerecognition"]
    batch = [spec.example_input(seed=i, length=i + 1) for i in range(4)]
    async with grpc.aio.insecure_channel(w.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        resp = await stub.Infer(
            worker_pb2.InferRequest(inputs=[tensors.to_proto(x) for x in batch]), timeout=60
        )
        assert [tensors.from_proto(o).shape for o in resp.outputs] == [(1,), (2,), (3,), (4,)]
        info = await stub.Describe(worker_pb2.DescribeRequest(), timeout=10)
        assert info.config == config and info.intra_op_threads == int(cfg.cores)
    await backend.stop(w.instance_id)
    assert _smiless_containers() == [], "stopped containers are removed"


async def test_dead_container_noticed_within_a_second(backend: DockerBackend) -> None:
    w = await backend.start("test-kill", "tiny-mlp", load_catalogue()["cpu-1"])
    killed = time.monotonic()
    await asyncio.to_thread(backend.containers[w.instance_id].kill)
    code = await asyncio.wait_for(backend.wait_exit(w.instance_id), timeout=1.0)
    assert code != 0 and time.monotonic() - killed < 1.0
    await backend.stop(w.instance_id)
    assert _smiless_containers() == []


async def test_gpu_config_refused_without_gpu_runtime(backend: DockerBackend) -> None:
    if await asyncio.to_thread(backend.gpu_runtime):
        pytest.skip("this engine has a GPU runtime")
    with pytest.raises(BackendError, match="no GPU runtime"):
        await backend.start("test-gpu", "tiny-mlp", load_catalogue()["gpu-10"])


async def test_restarted_backend_adopts_running_containers(backend: DockerBackend) -> None:
    w = await backend.start("test-adopt", "tiny-mlp", load_catalogue()["cpu-1"])
    fresh = DockerBackend(IMAGE, owner=OWNER)
    adopted = await fresh.adopt()
    assert [(a.instance_id, a.address, a.running) for a in adopted] == [("test-adopt", w.address, True)]
    backend.containers.pop(w.instance_id)  # the first controller "crashed"
    await fresh.close()
    assert _smiless_containers() == [], "the new controller stops what it adopted"


async def test_many_live_containers_do_not_starve_the_backend(backend: DockerBackend) -> None:
    """More live containers than the default thread pool has threads: starting one more
    must still work (each container's exit watch blocks a thread)."""
    cfg = load_catalogue()["cpu-1"]
    n = min(32, (os.cpu_count() or 1) + 4) + 1
    started = await asyncio.gather(*(backend.start(f"test-many-{i}", "tiny-mlp", cfg) for i in range(n)))
    assert len(started) == n
    extra = await asyncio.wait_for(backend.start("test-many-extra", "tiny-mlp", cfg), timeout=120)
    assert extra.address
    await backend.close()
    assert _smiless_containers() == []


# --- user models, bad models, faults mid-request ------------------------------------------------


async def test_user_model_is_mounted_read_only_and_served(backend: DockerBackend, tmp_path: Path) -> None:
    path = tmp_path / "affine.pt"
    name = save(Affine(), path, max_batch=8)
    w = await backend.start("test-user", name, load_catalogue()["cpu-1"])
    container = backend.containers[w.instance_id]
    container.reload()
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts[str(path)]["RW"] is False, "the model file is mounted read-only"
    xs = [np.arange(4, dtype=np.float32) * i for i in range(3)]
    async with grpc.aio.insecure_channel(w.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        resp = await stub.Infer(worker_pb2.InferRequest(inputs=[tensors.to_proto(x) for x in xs]), timeout=30)
        for x, out in zip(xs, resp.outputs, strict=True):
            np.testing.assert_allclose(tensors.from_proto(out), 2 * x + 1)
        for req, message in [
            (worker_pb2.InferRequest(inputs=[tensors.to_proto(xs[0])] * 9), "exceeds max_batch 8"),
            (worker_pb2.InferRequest(inputs=[tensors.to_proto(np.zeros((2, 4), np.float32))]), "inputs[0]"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Infer(req, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (info.value.details() or "")
        assert len((await stub.Infer(worker_pb2.InferRequest(inputs=[tensors.to_proto(xs[1])]))).outputs) == 1
    await backend.stop(w.instance_id)
    assert _smiless_containers() == []


async def test_model_file_the_worker_cannot_read_fails_the_start(
    backend: DockerBackend, tmp_path: Path
) -> None:
    """Readable here (root) but not by the worker's uid inside the container: the worker
    exits at start naming the problem, and nothing is left behind."""
    path = tmp_path / "private.pt"
    name = save(Affine(), path)
    path.chmod(0o600)
    with pytest.raises(ModelError, match=r"cannot read TorchScript file.*Permission denied"):
        await backend.start("test-private", name, load_catalogue()["cpu-1"])
    assert _smiless_containers() == []


async def test_bad_model_is_refused_before_a_container_exists(backend: DockerBackend) -> None:
    for model, message in [
        ("no-such-model", "model: unknown model 'no-such-model'"),
        ("torchscript:/nonexistent/model.pt", "model: cannot read TorchScript file"),
    ]:
        with pytest.raises(ModelError, match=message):
            await backend.start("test-bad", model, load_catalogue()["cpu-1"])
    assert _smiless_containers() == []


async def test_container_dying_mid_request_is_noticed_within_a_second(
    backend: DockerBackend, tmp_path: Path
) -> None:
    w = await backend.start("test-busy", save(Busy(), tmp_path / "busy.pt"), load_catalogue()["cpu-1"])
    forever = tensors.to_proto(np.full(4, 1e6, dtype=np.float32))
    async with grpc.aio.insecure_channel(w.address) as ch:
        call = asyncio.ensure_future(
            worker_pb2_grpc.WorkerStub(ch).Infer(worker_pb2.InferRequest(inputs=[forever]))
        )
        await until_in_flight(ch, 1)
        assert not call.done(), "the request is in flight"
        killed = time.monotonic()
        await asyncio.to_thread(backend.containers[w.instance_id].kill)
        code = await asyncio.wait_for(backend.wait_exit(w.instance_id), timeout=1.0)
        assert code != 0 and time.monotonic() - killed < 1.0
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(call, timeout=2.0)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    await backend.stop(w.instance_id)
    assert _smiless_containers() == []
