"""Real worker processes through the process backend: batched inference, bad input,
and a worker that dies."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from smiless import tensors, zoo
from smiless.backends.base import StartedWorker
from smiless.backends.process import ProcessBackend
from smiless.catalogue import load_catalogue
from smiless.v1 import common_pb2, worker_pb2, worker_pb2_grpc


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
