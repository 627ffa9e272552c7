"""Worker calls over one long-lived `InferStream` per worker.

Why: with grpc.aio, a message on an open stream costs each end about a third to a half of
what a unary call costs (measured on the 2-core development machine, tiny tensors: ~160 µs
per side against ~300 µs for the client and ~400 µs for the server of a unary call), and
an invocation of a DAG makes one worker call per stage.

Each worker address gets one stream, opened on its first call. Every request carries an id;
one reader task per stream hands each answer to the call waiting for it. A call waits at
most its timeout, then fails with DEADLINE_EXCEEDED (the timeout also travels to the worker,
which does not run a request that waited there longer). When the stream breaks (the worker
died, it was stopped), every call waiting on it fails with the stream's status
(UNAVAILABLE, CANCELLED, ...), which the data path retries on another instance, and the
next call opens a new stream. A worker that does not know InferStream (UNIMPLEMENTED: an
older image) is called with unary `Infer` from then on.

Coalescing: calls made while the stream's previous message is still waiting to be written
ride in that message (`coalesced`), and the worker answers the requests that are ready at
the same moment in one message. Each request stays its own forward pass under its own id
(this is not batching: nothing waits for anything to fill); under load a message carries
several requests, so both ends pay for fewer messages. Only a worker that announces
`smiless-coalesce` in the stream's initial metadata gets coalesced requests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from smiless import tensors
from smiless.protoutil import set_seconds, status_code
from smiless.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from smiless.worker import COALESCE_KEY, COALESCE_MAX_BYTES


class WorkerCallError(Exception):
    """A worker call that failed, with the gRPC status it failed with."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


Answer = asyncio.Future[worker_pb2.InferStreamResponse]


class _Open:
    """One open InferStream call: its request queue, its waiting calls and its reader."""

    __slots__ = ("broken", "call", "coalesce", "head", "head_bytes", "queue", "reader", "waiting", "written")

    def __init__(self, written: list[int]) -> None:
        self.written = written  # [messages, requests] written, the owner's running totals
        self.queue: asyncio.Queue[worker_pb2.InferStreamRequest | None] = asyncio.Queue()
        self.waiting: dict[int, Answer] = {}
        self.broken = False
        self.coalesce = False  # the worker takes coalesced requests (its initial metadata)
        self.head: worker_pb2.InferStreamRequest | None = None  # queued, not yet taken to write
        self.head_bytes = 0  # tensor bytes in the head message
        self.call: Any = None
        self.reader: asyncio.Task[None] | None = None

    def request(self, i: int, nbytes: int) -> worker_pb2.InferStreamRequest:
        """A new request message (of `nbytes` tensor bytes): in the message still waiting to
        be written when the worker takes coalesced requests and it has room, else a message
        of its own, queued."""
        if self.head is not None and self.head_bytes + nbytes <= COALESCE_MAX_BYTES:
            self.head_bytes += nbytes
            return self.head.coalesced.add(id=i)
        item = worker_pb2.InferStreamRequest(id=i)
        self.queue.put_nowait(item)
        if self.coalesce:
            self.head, self.head_bytes = item, nbytes
        return item

    async def requests(self) -> AsyncIterator[worker_pb2.InferStreamRequest]:
        written = self.written
        while (item := await self.queue.get()) is not None:
            if item is self.head:
                self.head = None  # being written: later calls start a new message
            written[0] += 1
            written[1] += 1 + len(item.coalesced)
            yield item

    def fail(self, code: grpc.StatusCode, details: str) -> None:
        self.broken = True
        self.queue.put_nowait(None)  # ends the request side
        waiting, self.waiting = self.waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(WorkerCallError(code, details))


def _expire(fut: Answer) -> None:
    if not fut.done():
        fut.set_exception(WorkerCallError(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer within the timeout"))


class WorkerStream:
    """The gateway's calls to one worker address."""

    def __init__(self, stub: worker_pb2_grpc.WorkerStub, streamed: bool = True) -> None:
        self.stub = stub
        self.streamed = streamed  # False: unary Infer (configured, or the worker lacks InferStream)
        self._ids = itertools.count(1)
        self._open: _Open | None = None
        self.written = [0, 0]
        """Stream messages and the requests in them written so far (coalescing shows here)."""

    async def infer(self, inputs: Sequence[common_pb2.Tensor], timeout: float) -> worker_pb2.InferResponse:
        """The worker's answer to one batch; WorkerCallError when the call fails."""
        if self.streamed:
            try:
                return await self._streamed(inputs, timeout)
            except WorkerCallError as exc:
                if exc.code != grpc.StatusCode.UNIMPLEMENTED or self.streamed:
                    raise
        try:
            resp: worker_pb2.InferResponse = await self.stub.Infer(
                worker_pb2.InferRequest(inputs=inputs), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise WorkerCallError(exc.code(), exc.details() or "") from exc
        return resp

    async def _streamed(
        self, inputs: Sequence[common_pb2.Tensor], timeout: float
    ) -> worker_pb2.InferResponse:
        s = self._open
        if s is None or s.broken:
            s = self._start()
        loop = asyncio.get_running_loop()
        i = next(self._ids)
        item = s.request(i, tensors.data_bytes(inputs))
        item.request.inputs.extend(inputs)
        set_seconds(item.timeout, timeout)
        fut: Answer = loop.create_future()
        s.waiting[i] = fut
        timer = loop.call_later(timeout, _expire, fut)
        try:
            got = await fut
        finally:
            timer.cancel()
            s.waiting.pop(i, None)
        if got.code:
            raise WorkerCallError(status_code(got.code), got.message)
        return got.response

    def _start(self) -> _Open:
        s = _Open(self.written)
        s.call = self.stub.InferStream(s.requests())
        s.reader = asyncio.get_running_loop().create_task(self._read(s))
        self._open = s
        return s

    async def _read(self, s: _Open) -> None:
        code, details = grpc.StatusCode.UNAVAILABLE, "the worker ended the stream"
        try:
            metadata = await s.call.initial_metadata()
            s.coalesce = metadata is not None and COALESCE_KEY in metadata
            waiting = s.waiting
            while True:
                got = await s.call.read()
                if got is grpc.aio.EOF:
                    break
                for answer in (got, *got.coalesced) if got.coalesced else (got,):
                    fut = waiting.pop(answer.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(answer)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.UNIMPLEMENTED:
                self.streamed = False
            elif code == grpc.StatusCode.INTERNAL:
                # The worker answers every failure in-band, so a stream ended with INTERNAL is
                # the transport's: grpc aio reports a write that fails as the stream ends (a
                # killed worker) as "INTERNAL: Internal error from Core" (grpc/grpc#36066).
                # Another instance may serve the call.
                code, details = grpc.StatusCode.UNAVAILABLE, f"the stream to the worker broke: {details}"
        except asyncio.CancelledError:
            code, details = grpc.StatusCode.CANCELLED, "the stream to the worker was closed"
            raise
        finally:
            s.fail(code, details)
            if self._open is s:
                self._open = None

    async def close(self) -> None:
        """End the stream; calls still waiting on it fail with CANCELLED."""
        s, self._open = self._open, None
        if s is None:
            return
        s.call.cancel()
        if s.reader is not None:
            s.reader.cancel()
            await asyncio.gather(s.reader, return_exceptions=True)
        s.fail(grpc.StatusCode.CANCELLED, "the stream to the worker was closed")
