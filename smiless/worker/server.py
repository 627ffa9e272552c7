"""The Worker gRPC service: load one model, time the init phases, serve batched Infer (one
call per request, or many requests over one InferStream call: what the gateway uses)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from smiless import tensors, zoo
from smiless.protoutil import get_seconds, set_seconds
from smiless.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from smiless.worker import COALESCE_KEY, COALESCE_MAX_BYTES

MAX_MESSAGE = 64 * 1024 * 1024
# A forward pass expected to take less than this runs on the event loop, not in a thread.
INLINE_S = 0.002
# An InferStream answer waits at most this long for the answers of requests queued behind it
# to go in the same message (only those whose forward pass is expected to fit).
COALESCE_S = 0.0005


class Refused(Exception):
    """A request the worker answers with `code` (bad input, a failing model, too late)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ZooNet(Protocol):
    """What smiless/worker/models.py builds: one forward pass over a batch."""

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]: ...


def _phase(name: str, seconds: float) -> common_pb2.InitPhase:
    p = common_pb2.InitPhase(name=name)
    set_seconds(p.duration, seconds)
    return p


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(
        self,
        spec: zoo.ModelSpec,
        config: str,
        model: ZooNet,
        threads: int,
        phases: list[common_pb2.InitPhase],
    ) -> None:
        self.spec = spec
        self.config = config
        self.model = model
        self.threads = threads
        self.phases = phases
        self.lock = asyncio.Lock()
        self.served = 0
        self.in_flight = 0
        self.idle_since = time.time()
        # (batch size, input bytes) -> seconds the last forward pass of such a batch took
        self.last: dict[tuple[int, int], float] = {}

    def _forward(self, batch: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
        import torch

        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.run(batch)
        return out, time.perf_counter() - t0

    def _batch(self, inputs: Sequence[common_pb2.Tensor]) -> list[np.ndarray]:
        """Decode and check a request's inputs; Refused (INVALID_ARGUMENT) names the one at fault."""
        n = len(inputs)
        if n == 0:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "inputs: the batch is empty")
        if n > self.spec.max_batch:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"inputs: batch of {n} exceeds max_batch {self.spec.max_batch}",
            )
        batch: list[np.ndarray] = []
        check = self.spec.input.check
        for i, t in enumerate(inputs):
            try:
                array = tensors.from_proto(t)
            except tensors.TensorError as exc:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"inputs[{i}]: {exc}") from exc
            why = check(array)
            if why:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"inputs[{i}]: {why} ({self.spec.name})")
            batch.append(array)
        return batch

    def _done(self, n: int = 1) -> None:
        """`n` requests counted in in_flight are answered."""
        self.in_flight -= n
        if self.in_flight == 0:
            self.idle_since = time.time()

    async def _infer(
        self,
        inputs: Sequence[common_pb2.Tensor],
        counted: bool = False,
        into: worker_pb2.InferResponse | None = None,
    ) -> worker_pb2.InferResponse:
        """One forward pass over a request's batch. A pass expected to be short (the last one
        over a batch of this size and this many input bytes took under INLINE_S; a first one
        is not expected to) runs on the event loop: for small models the hop to a thread
        costs more than the model. Others run in a thread, so the server keeps answering
        (health, Describe) meanwhile. A pass that turns out long (a model whose time depends
        on the values, not the sizes) sends the next one of its kind to the thread again.
        Passes never overlap. The answer is written into `into` when given (a stream's
        message: no copy)."""
        batch = self._batch(inputs)
        n = len(batch)
        kind = self._kind(inputs)
        if not counted:  # a stream counts its requests from when it reads them
            self.in_flight += 1
        try:
            if self.lock.locked() or self.last.get(kind, INLINE_S) >= INLINE_S:
                async with self.lock:
                    outputs, seconds = await asyncio.to_thread(self._forward, batch)
            else:
                outputs, seconds = self._forward(batch)
        except Exception as exc:  # a fault of the model (e.g. a user's module), not of the input
            raise Refused(grpc.StatusCode.INTERNAL, f"model: {self.spec.name} failed: {exc}") from exc
        finally:
            if not counted:
                self._done()
        self.last[kind] = seconds
        self.served += n
        resp = worker_pb2.InferResponse() if into is None else into
        resp.outputs.extend([tensors.to_proto(o) for o in outputs])
        set_seconds(resp.inference_time, seconds)
        return resp

    @staticmethod
    def _kind(inputs: Sequence[common_pb2.Tensor]) -> tuple[int, int]:
        """(batch size, input bytes): what the inline/thread choice goes by."""
        return len(inputs), tensors.data_bytes(inputs)

    def _expected_s(self, item: worker_pb2.InferStreamRequest) -> float | None:
        """How long answering `item` is expected to take on the event loop; None when its
        forward pass would go to a thread (or is not known yet)."""
        if self.lock.locked():
            return None
        took = self.last.get(self._kind(item.request.inputs))
        return took if took is not None and took < INLINE_S else None

    async def Infer(
        self, request: worker_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.InferResponse:
        try:
            return await self._infer(request.inputs)
        except Refused as exc:
            await context.abort(exc.code, exc.message)
            raise  # abort raises; this line is never reached

    async def InferStream(
        self,
        request_iterator: AsyncIterator[worker_pb2.InferStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[worker_pb2.InferStreamResponse]:
        """Answer each request in order, with its id; a failed one carries its status and the
        stream goes on. Requests are read as they arrive (and timed from then), so one that
        waited here longer than its caller waits is answered DEADLINE_EXCEEDED, not run.
        Requests coalesced in one message are queued one by one; answers ready together (the
        next pass expected to fit in COALESCE_S) go in one message to a caller that
        coalesces."""
        await context.send_initial_metadata(((COALESCE_KEY, "1"),))
        queued: deque[tuple[float, worker_pb2.InferStreamRequest]] = deque()
        arrived = asyncio.Event()
        ended = False
        coalescing = False  # the caller sends coalesced requests, so it reads coalesced answers

        async def read() -> None:
            nonlocal ended, coalescing
            try:
                async for item in request_iterator:
                    now = time.monotonic()
                    queued.append((now, item))
                    if item.coalesced:
                        coalescing = True
                        queued.extend((now, more) for more in item.coalesced)
                    self.in_flight += 1 + len(item.coalesced)
                    arrived.set()
            finally:
                ended = True
                arrived.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                if not queued:
                    if ended:
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                out = worker_pb2.InferStreamResponse()
                await self._answer(*queued.popleft(), out)
                if coalescing:
                    first = time.perf_counter()
                    size = tensors.data_bytes(out.response.outputs)
                    while queued and size < COALESCE_MAX_BYTES:
                        expected = self._expected_s(queued[0][1])
                        if expected is None or time.perf_counter() - first + expected > COALESCE_S:
                            break
                        more = out.coalesced.add()
                        await self._answer(*queued.popleft(), more)
                        size += tensors.data_bytes(more.response.outputs)
                yield out
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            if queued:  # the caller went away with requests still queued
                self._done(len(queued))

    async def _answer(
        self, received: float, item: worker_pb2.InferStreamRequest, out: worker_pb2.InferStreamResponse
    ) -> None:
        """Run one stream request (counted in in_flight since it was read) into `out`."""
        out.id = item.id
        try:
            if item.HasField("timeout"):
                waited = time.monotonic() - received
                if waited >= get_seconds(item.timeout):
                    raise Refused(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"timeout: queued {waited * 1000:.0f} ms in the worker, "
                        f"past the caller's {get_seconds(item.timeout) * 1000:.0f} ms",
                    )
            await self._infer(item.request.inputs, counted=True, into=out.response)
        except Refused as exc:
            out.ClearField("response")
            out.code, out.message = exc.code.value[0], exc.message
        finally:
            self._done()

    async def Describe(
        self, request: worker_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.DescribeResponse:
        resp = worker_pb2.DescribeResponse(
            model=self.spec.name,
            config=self.config,
            ready=True,
            init_phases=self.phases,
            max_batch=self.spec.max_batch,
            input_dtype=tensors.dtype_code(self.spec.input.dtype),
            input_shape=list(self.spec.input.shape),
            intra_op_threads=self.threads,
            served=self.served,
            in_flight=self.in_flight,
        )
        if self.in_flight == 0:
            set_seconds(resp.idle_since, self.idle_since)
        return resp


async def run(
    model_name: str,
    config: str,
    threads: int,
    host: str,
    port: int,
    seed: int,
    spawned: float,
    started: float,
) -> None:
    """Load the model (timing each phase), then serve until SIGTERM."""
    spec = zoo.resolve(model_name)
    import torch

    torch.set_num_threads(max(1, threads))
    from smiless.worker import models

    models.import_runtime(model_name)  # torch and the model's transformers modules
    imported = time.time()
    model: ZooNet = models.build(model_name, seed)
    built = time.time()
    with torch.inference_mode():
        model.run([spec.example_input()])
    warmed = time.time()
    phases = [
        _phase("process_start", started - spawned),
        _phase("runtime_import", imported - started),
        _phase("model_load", built - imported),
        _phase("warmup", warmed - built),
    ]
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
    )
    worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(spec, config, model, threads, phases), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        ["smiless.v1.Worker", "grpc.health.v1.Health", reflection.SERVICE_NAME], server
    )
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await health.set("smiless.v1.Worker", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health.enter_graceful_shutdown()
    await server.stop(5)
