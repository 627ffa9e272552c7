"""Real worker processes through the process backend: batched inference, bad input, user
TorchScript models, bad models, and a worker that dies (idle and mid-request)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from smiless import tensors, zoo
from smiless.backends.base import BackendError, ModelError, StartedWorker
from smiless.backends.process import ProcessBackend, host_has_gpu
from smiless.catalogue import load_catalogue
from smiless.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from tests.torchscript_models import VEC, Affine, Busy, WrongShape, save
from tests.waiting import until_in_flight


@pytest.fixture
async def backend() -> AsyncIterator[ProcessBackend]:
    b = ProcessBackend(start_timeout_s=120, stop_timeout_s=5)
    yield b
    await b.close()


async def _start(backend: ProcessBackend, model: str, config: str = "cpu-1") -> StartedWorker:
    return await backend.start(f"test-{model}", model, load_catalogue()[config])


async def test_batched_inference_and_phases(backend: ProcessBackend) -> None:
    w = await _start(backend, "imagerecognition", "cpu-2")
    assert set(w.phases) == {"process_start", "runtime_import", "model_load", "warmup"}
    assert all(v >= 0 for v in w.phases.values())
    spec = zoo.MODELS["imagerecognition"]
    batch = [spec.example_input(seed=i, length=i + 1) for i in range(4)]
    async with grpc.aio.insecure_channel(w.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        resp = await stub.Infer(worker_pb2.InferRequest(inputs=[tensors.to_proto(x) for x in batch]))
        assert len(resp.outputs) == 4
        for i, out in enumerate(resp.outputs):
            y = tensors.from_proto(out)
            assert spec.output.check(y) is None
            assert y.shape == (i + 1,), "one label per input crop"
        assert resp.inference_time.ToNanoseconds() > 0
        info = await stub.Describe(worker_pb2.DescribeRequest())
        assert info.ready and info.model == "imagerecognition" and info.config == "cpu-2"
        assert info.intra_op_threads == 2


async def test_bad_input_is_rejected_and_worker_stays_up(backend: ProcessBackend) -> None:
    w = await _start(backend, "tiny-mlp")
    good = tensors.to_proto(np.zeros(16, dtype=np.float32))
    short = common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_FLOAT32, shape=[16], data=b"x")
    cases = [
        (worker_pb2.InferRequest(), "empty"),
        (worker_pb2.InferRequest(inputs=[good] * 65), "max_batch"),
        (worker_pb2.InferRequest(inputs=[tensors.to_proto(np.zeros(15, dtype=np.float32))]), "inputs[0]"),
        (worker_pb2.InferRequest(inputs=[good, tensors.to_proto(np.zeros(16, dtype=np.int64))]), "inputs[1]"),
        (worker_pb2.InferRequest(inputs=[short]), "bytes"),
    ]
    async with grpc.aio.insecure_channel(w.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        for req, message in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Infer(req)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (info.value.details() or "")
        resp = await stub.Infer(worker_pb2.InferRequest(inputs=[good]))
        assert len(resp.outputs) == 1


async def test_dead_worker_noticed_within_a_second(backend: ProcessBackend) -> None:
    w = await _start(backend, "tiny-mlp")
    proc = backend.procs[w.instance_id]
    killed = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    code = await asyncio.wait_for(backend.wait_exit(w.instance_id), timeout=1.0)
    assert code != 0 and time.monotonic() - killed < 1.0


async def test_stop_is_graceful(backend: ProcessBackend) -> None:
    w = await _start(backend, "tiny-mlp")
    proc = backend.procs[w.instance_id]
    await backend.stop(w.instance_id)
    assert proc.returncode == 0, "SIGTERM lets the worker drain and exit cleanly"


# --- user models, bad models, faults mid-request ------------------------------------------------


async def test_user_torchscript_model_serves_its_contract(backend: ProcessBackend, tmp_path: Path) -> None:
    name = save(Affine(), tmp_path / "affine.pt", max_batch=8)
    w = await backend.start("test-user", name, load_catalogue()["cpu-1"])
    xs = [np.arange(4, dtype=np.float32) + i for i in range(3)]
    async with grpc.aio.insecure_channel(w.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        resp = await stub.Infer(worker_pb2.InferRequest(inputs=[tensors.to_proto(x) for x in xs]))
        for x, out in zip(xs, resp.outputs, strict=True):
            np.testing.assert_allclose(tensors.from_proto(out), 2 * x + 1)
        info = await stub.Describe(worker_pb2.DescribeRequest())
        assert info.model == name and info.max_batch == 8 and list(info.input_shape) == [4]
        for req, message in [
            (worker_pb2.InferRequest(inputs=[tensors.to_proto(xs[0])] * 9), "exceeds max_batch 8"),
            (worker_pb2.InferRequest(inputs=[tensors.to_proto(np.zeros(5, np.float32))]), "inputs[0]: shape"),
            (worker_pb2.InferRequest(inputs=[tensors.to_proto(np.zeros(4, np.int64))]), "inputs[0]: dtype"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as info_err:
                await stub.Infer(req)
            assert info_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (info_err.value.details() or "")
        again = await stub.Infer(worker_pb2.InferRequest(inputs=[tensors.to_proto(xs[0])]))
        assert len(again.outputs) == 1, "the worker stays up after bad input"


async def test_module_that_breaks_its_contract_is_an_internal_error(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    w = await backend.start(
        "test-wrong", save(WrongShape(), tmp_path / "wrong.pt"), load_catalogue()["cpu-1"]
    )
    x = tensors.to_proto(np.ones(4, np.float32))
    async with grpc.aio.insecure_channel(w.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Infer(worker_pb2.InferRequest(inputs=[x, x]))
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "model:" in (info.value.details() or "") and "returned shape [1, 4]" in (
            info.value.details() or ""
        )
        # one input: the module's [1, 4] happens to fit, and the worker is still serving
        resp = await stub.Infer(worker_pb2.InferRequest(inputs=[x]))
        np.testing.assert_allclose(tensors.from_proto(resp.outputs[0]), np.ones(4))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("no-such-model", "model: unknown model 'no-such-model'"),
        ("torchscript:/nonexistent/model.pt", "model: cannot read TorchScript file /nonexistent/model.pt"),
    ],
)
async def test_bad_model_is_refused_before_anything_starts(
    backend: ProcessBackend, model: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        await backend.start("test-bad", model, load_catalogue()["cpu-1"])
    assert backend.procs == {}, "no worker was started"


def test_worker_refuses_a_bad_model_at_start() -> None:
    """The worker itself checks too (a file can vanish between validation and start)."""
    for model, message in [
        ("no-such-model", "--model: unknown model 'no-such-model'"),
        ("torchscript:/nonexistent/model.pt", "--model: cannot read TorchScript file"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "smiless.worker", "--model", model, "--port", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


async def test_file_torch_cannot_load_fails_the_start_with_the_reason(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.pt"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("m/data.pkl", "junk")
        z.writestr(f"m/extra/{zoo.CONTRACT_FILE}", zoo.contract_json(VEC, VEC))
    with pytest.raises(ModelError, match=r"exited with code 2.*cannot load TorchScript"):
        await backend.start("test-fake", f"torchscript:{fake}", load_catalogue()["cpu-1"])


async def test_worker_dying_mid_request_fails_the_call_and_is_noticed(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    w = await backend.start("test-busy", save(Busy(), tmp_path / "busy.pt"), load_catalogue()["cpu-1"])
    forever = tensors.to_proto(np.full(4, 1e6, dtype=np.float32))  # minutes of matrix products
    async with grpc.aio.insecure_channel(w.address) as ch:
        call = asyncio.ensure_future(
            worker_pb2_grpc.WorkerStub(ch).Infer(worker_pb2.InferRequest(inputs=[forever]))
        )
        await until_in_flight(ch, 1)
        assert not call.done(), "the request is in flight"
        killed = time.monotonic()
        os.kill(backend.procs[w.instance_id].pid, signal.SIGKILL)
        code = await asyncio.wait_for(backend.wait_exit(w.instance_id), timeout=1.0)
        assert code != 0
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(call, timeout=1.0)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - killed < 1.5


async def test_gpu_config_refused_on_a_machine_without_gpu(backend: ProcessBackend) -> None:
    if host_has_gpu():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendError, match="gpu-10 needs a GPU, but this machine has none"):
        await backend.start("test-gpu", "tiny-mlp", load_catalogue()["gpu-10"])
    assert backend.procs == {}


STARTER = """
import asyncio, sys, time
from smiless.backends.process import ProcessBackend
from smiless.catalogue import load_catalogue

async def main():
    b = ProcessBackend(start_timeout_s=120)
    await b.start("orphan", "tiny-mlp", load_catalogue()["cpu-1"])
    print(b.procs["orphan"].pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_worker_does_not_outlive_the_process_that_started_it() -> None:
    """The optimizer killed outright (SIGKILL, as after a stop that took too long) must not
    leave its workers running: they cannot be adopted again."""
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        pid = int(starter.stdout.readline())
        assert _alive(pid)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the worker outlived its starter"
    finally:
        starter.kill()
        starter.wait()
