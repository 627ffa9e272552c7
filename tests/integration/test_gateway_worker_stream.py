"""The gateway's worker calls over InferStream, against real worker processes: answers matched
by id and in order, bad input answered per request while the stream goes on, the deadline
carried to the worker, a worker that dies or stalls mid-stream, and a worker without
InferStream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from smiless import tensors, zoo
from smiless.backends.base import StartedWorker
from smiless.backends.process import ProcessBackend
from smiless.catalogue import load_catalogue
from smiless.protoutil import set_seconds
from smiless.services.gateway.streams import WorkerCallError, WorkerStream
from smiless.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from smiless.worker import models
from tests.torchscript_models import Affine, Busy, save
from tests.waiting import until_in_flight


@pytest.fixture
async def backend() -> AsyncIterator[ProcessBackend]:
    b = ProcessBackend(start_timeout_s=120, stop_timeout_s=5)
    yield b
    await b.close()


@pytest.fixture
async def mlp(backend: ProcessBackend) -> StartedWorker:
    return await backend.start("test-stream-mlp", "tiny-mlp", load_catalogue()["cpu-1"])


def mlp_input(seed: int) -> common_pb2.Tensor:
    return tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input(seed=seed))


async def test_stream_answers_by_id_in_order_and_survives_bad_input(mlp: StartedWorker) -> None:
    xs = [mlp_input(i) for i in range(4)]
    bad = tensors.to_proto(np.zeros(15, dtype=np.float32))
    items = [
        worker_pb2.InferStreamRequest(id=10, request=worker_pb2.InferRequest(inputs=xs[:2])),
        worker_pb2.InferStreamRequest(id=11, request=worker_pb2.InferRequest()),
        worker_pb2.InferStreamRequest(id=12, request=worker_pb2.InferRequest(inputs=[xs[2], bad])),
        worker_pb2.InferStreamRequest(id=13, request=worker_pb2.InferRequest(inputs=[xs[3]])),
    ]
    async with grpc.aio.insecure_channel(mlp.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        answers = [a async for a in stub.InferStream(iter(items))]
        assert [a.id for a in answers] == [10, 11, 12, 13]
        invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert [a.code for a in answers] == [0, invalid, invalid, 0]
        assert answers[1].message.startswith("inputs: the batch is empty")
        assert answers[2].message.startswith("inputs[1]: ")
        # the same outputs as unary Infer
        unary = await stub.Infer(worker_pb2.InferRequest(inputs=xs[:2]))
        assert list(answers[0].response.outputs) == list(unary.outputs)
        unary3 = await stub.Infer(worker_pb2.InferRequest(inputs=[xs[3]]))
        assert list(answers[3].response.outputs) == list(unary3.outputs)
        assert answers[0].response.inference_time.ToNanoseconds() > 0


async def test_expired_request_is_not_run(mlp: StartedWorker) -> None:
    late = worker_pb2.InferStreamRequest(id=1, request=worker_pb2.InferRequest(inputs=[mlp_input(0)]))
    set_seconds(late.timeout, 1e-9)  # gone before the worker can look at it
    on_time = worker_pb2.InferStreamRequest(id=2, request=worker_pb2.InferRequest(inputs=[mlp_input(1)]))
    set_seconds(on_time.timeout, 30.0)
    async with grpc.aio.insecure_channel(mlp.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        served = (await stub.Describe(worker_pb2.DescribeRequest())).served
        answers = [a async for a in stub.InferStream(iter([late, on_time]))]
        assert answers[0].code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
        assert answers[0].message.startswith("timeout: ")
        assert answers[1].code == 0 and len(answers[1].response.outputs) == 1
        info = await stub.Describe(worker_pb2.DescribeRequest())
        assert info.served == served + 1, "only the request on time ran"
        assert info.in_flight == 0 and info.HasField("idle_since"), "both were answered"


async def test_client_shares_one_stream_and_matches_concurrent_answers(mlp: StartedWorker) -> None:
    xs = [mlp_input(i) for i in range(40)]
    async with grpc.aio.insecure_channel(mlp.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        expected = [(await stub.Infer(worker_pb2.InferRequest(inputs=[x]))).outputs[0] for x in xs]
        w = WorkerStream(stub)
        got = await asyncio.gather(*(w.infer([x], 30) for x in xs))
        assert [r.outputs[0] for r in got] == expected, "each caller gets the answer to its own input"
        # The stream is open and the worker has said it takes coalesced requests: calls made
        # while a message waits to be written ride in it, each still answered on its own.
        messages, requests = w.written
        got = await asyncio.gather(*(w.infer([x], 30) for x in reversed(xs)))
        assert [r.outputs[0] for r in got] == expected[::-1], "coalesced: each caller, its own answer"
        assert w.written[1] - requests == len(xs)
        assert w.written[0] - messages < len(xs), "some requests shared a message"
        with pytest.raises(WorkerCallError) as info:
            await w.infer([], 30)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        again = await w.infer([xs[0]], 30)
        assert again.outputs[0] == expected[0], "the stream goes on after a refused request"
        await w.close()


async def test_dead_or_stalled_worker_fails_waiting_calls(backend: ProcessBackend, tmp_path: Path) -> None:
    w = await backend.start("test-stream-busy", save(Busy(), tmp_path / "busy.pt"), load_catalogue()["cpu-1"])
    pid = backend.procs[w.instance_id].pid
    quick = tensors.to_proto(np.full(4, 1.0, dtype=np.float32))
    forever = tensors.to_proto(np.full(4, 1e6, dtype=np.float32))  # minutes of matrix products
    async with grpc.aio.insecure_channel(w.address) as ch:
        stream = WorkerStream(worker_pb2_grpc.WorkerStub(ch))
        assert len((await stream.infer([quick], 30)).outputs) == 1
        # A worker that does not answer in time: the call gives up at its timeout.
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(WorkerCallError) as info:
                await stream.infer([quick], 0.3)
            assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.3 <= time.monotonic() - t0 < 2.0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert len((await stream.infer([quick], 30)).outputs) == 1, "a late answer is dropped, not misrouted"
        # A worker that dies: every call waiting on its stream fails, retryably, at once.
        # (A batch of two: its first pass runs in a thread, so Describe is answered meanwhile.)
        calls = [
            asyncio.ensure_future(stream.infer([forever, forever], 60)),
            asyncio.ensure_future(stream.infer([quick], 60)),
        ]
        await until_in_flight(ch, 2)
        assert not any(c.done() for c in calls), "both requests are waiting"
        info = await worker_pb2_grpc.WorkerStub(ch).Describe(worker_pb2.DescribeRequest(), timeout=5)
        assert info.in_flight == 2, "a request queued on the stream counts as in flight"
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        for c in calls:
            with pytest.raises(WorkerCallError) as died:
                await asyncio.wait_for(c, 5)
            assert died.value.code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.UNKNOWN,
            )
        assert time.monotonic() - killed < 5
        await stream.close()


@contextlib.asynccontextmanager
async def fake_worker(method: str, rpc: grpc.RpcMethodHandler) -> AsyncIterator[str]:
    """A stand-in worker server that knows only `method` (for older worker images); yields
    its address."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("smiless.v1.Worker", {method: rpc}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def stream_handler(
    behaviour: Callable[
        [AsyncIterator[worker_pb2.InferStreamRequest], grpc.aio.ServicerContext],
        AsyncIterator[worker_pb2.InferStreamResponse],
    ],
) -> grpc.RpcMethodHandler:
    """A fake worker's InferStream, for `fake_worker`."""
    return grpc.stream_stream_rpc_method_handler(
        behaviour,
        request_deserializer=worker_pb2.InferStreamRequest.FromString,
        response_serializer=worker_pb2.InferStreamResponse.SerializeToString,
    )


async def test_worker_without_infer_stream_gets_unary_calls() -> None:
    """A stand-in for an older worker image (a fake: a server that only knows unary Infer)."""
    calls: list[str] = []

    async def infer(
        request: worker_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.InferResponse:
        calls.append("Infer")
        return worker_pb2.InferResponse(outputs=list(request.inputs))

    rpc = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=worker_pb2.InferRequest.FromString,
        response_serializer=worker_pb2.InferResponse.SerializeToString,
    )
    async with fake_worker("Infer", rpc) as address, grpc.aio.insecure_channel(address) as ch:
        w = WorkerStream(worker_pb2_grpc.WorkerStub(ch))
        x = mlp_input(0)
        first = await w.infer([x], 10)
        assert list(first.outputs) == [x] and not w.streamed
        await w.infer([x], 10)
        assert calls == ["Infer", "Infer"]
        await w.close()


async def test_stream_broken_with_internal_is_retryable() -> None:
    """A fake worker that ends its stream with INTERNAL: grpc aio reports a write that fails
    as the stream ends (a worker killed at that moment) as INTERNAL (grpc/grpc#36066), a race
    a real kill provokes only rarely. The gateway must read it as a broken transport
    (UNAVAILABLE, tried elsewhere), not as the model's failure, which the worker reports
    in-band."""

    async def infer_stream(
        requests: AsyncIterator[worker_pb2.InferStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb2.InferStreamResponse]:
        async for _ in requests:
            await context.abort(grpc.StatusCode.INTERNAL, "Internal error from Core")
        yield worker_pb2.InferStreamResponse()  # never reached: makes this a generator

    rpc = stream_handler(infer_stream)
    async with fake_worker("InferStream", rpc) as address, grpc.aio.insecure_channel(address) as ch:
        w = WorkerStream(worker_pb2_grpc.WorkerStub(ch))
        with pytest.raises(WorkerCallError) as info:
            await w.infer([mlp_input(0)], 10)
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert "the stream to the worker broke" in info.value.details and "from Core" in info.value.details
        assert w.streamed, "a broken stream is not a worker without InferStream"
        await w.close()


async def test_worker_answers_coalesced_requests_each_under_its_own_id(mlp: StartedWorker) -> None:
    xs = [mlp_input(i) for i in range(6)]
    bad = tensors.to_proto(np.zeros(15, dtype=np.float32))
    head = worker_pb2.InferStreamRequest(id=1, request=worker_pb2.InferRequest(inputs=[xs[0]]))
    for i, x in enumerate([*xs[1:3], bad, *xs[3:]], start=2):
        head.coalesced.add(id=i).request.inputs.append(x)
    late = head.coalesced.add(id=99)
    late.request.inputs.append(xs[0])
    set_seconds(late.timeout, 1e-9)
    async with grpc.aio.insecure_channel(mlp.address) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        expected = [(await stub.Infer(worker_pb2.InferRequest(inputs=[x]))).outputs[0] for x in xs]
        call = stub.InferStream(iter([head]))
        assert "smiless-coalesce" in (await call.initial_metadata())
        answers = [a for m in [m async for m in call] for a in (m, *m.coalesced)]
        assert [a.id for a in answers] == [1, 2, 3, 4, 5, 6, 7, 99], "each request answered once, in order"
        ok = [a.response.outputs[0] for a in answers if a.code == 0]
        assert ok == expected, "each coalesced request is its own forward pass on its own input"
        assert answers[3].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert answers[3].message.startswith("inputs[0]: ")
        assert answers[-1].code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
        info = await stub.Describe(worker_pb2.DescribeRequest())
        assert info.in_flight == 0, "every coalesced request is counted out again"


async def test_worker_without_coalescing_gets_one_request_per_message() -> None:
    """A stand-in for an older worker image that has InferStream but does not announce
    coalescing (a fake: a server whose InferStream echoes the inputs)."""
    seen: list[int] = []

    async def infer_stream(
        requests: AsyncIterator[worker_pb2.InferStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb2.InferStreamResponse]:
        async for item in requests:
            seen.append(len(item.coalesced))
            await asyncio.sleep(0.001)  # answers come slower than calls: calls queue up
            out = worker_pb2.InferStreamResponse(id=item.id)
            out.response.outputs.extend(item.request.inputs)
            yield out

    rpc = stream_handler(infer_stream)
    async with fake_worker("InferStream", rpc) as address, grpc.aio.insecure_channel(address) as ch:
        w = WorkerStream(worker_pb2_grpc.WorkerStub(ch))
        xs = [mlp_input(i) for i in range(20)]
        for _ in range(2):
            got = await asyncio.gather(*(w.infer([x], 10) for x in xs))
            assert [r.outputs[0] for r in got] == xs
        assert seen == [0] * 40 and w.written == [40, 40], "never coalesced to this worker"
        await w.close()


async def test_large_requests_share_a_message_only_up_to_the_byte_bound(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    big = zoo.TensorSpec("float32", (100_000,))  # 400 kB per request
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(Affine())
    name = models.save_torchscript(scripted, tmp_path / "affine.pt", big, big, max_batch=4)
    w = await backend.start("test-stream-big", name, load_catalogue()["cpu-1"])
    xs = [tensors.to_proto(np.full(100_000, float(i), dtype=np.float32)) for i in range(12)]
    async with grpc.aio.insecure_channel(w.address) as ch:
        stream = WorkerStream(worker_pb2_grpc.WorkerStub(ch))
        await stream.infer([xs[0]], 30)  # opens the stream; the worker announces coalescing
        messages = stream.written[0]
        got = await asyncio.gather(*(stream.infer([x], 30) for x in xs))
        for i, r in enumerate(got):
            assert np.array_equal(tensors.from_proto(r.outputs[0]), np.full(100_000, 2.0 * i + 1))
        sent = stream.written[0] - messages
        assert len(xs) // 2 <= sent < len(xs), f"two 400 kB requests per 1 MiB message, not more ({sent})"
        await stream.close()
