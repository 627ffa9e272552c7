"""Per-function batching as the plan says: up to B requests in one `Infer` call.

B is per instance, as in the simulator: the batch the controller started the instance for
(`Instance.batch`), so an instance sized for one request is never handed a burst's batch
that a larger instance was started to take. Each batch is bound to its instance when it
goes out (the least loaded ready one, `pick`), and its requests are counted there at once,
so the next batch of the same flush goes to another; with no instance ready, or one of
unknown batch, B is the app's planned batch and the dispatch finds an instance.

A request joins the open batch of its function; the batch goes out when it holds B requests
or when the earliest wait bound of its members passes, whichever comes first. A member's
wait bound is what its remaining SLA budget allows (the data path computes it; 0 means go
now). Batches are independent once sent: several can be in flight on several instances.
Each member waits for its own result within its own deadline; the batch call itself gets
the latest deadline of its members, so one impatient request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from smiless.server import RpcError
from smiless.v1 import common_pb2

R = TypeVar("R")  # what a dispatch returns for the whole batch
Dispatch = Callable[
    [list[common_pb2.Tensor], float, common_pb2.Instance | None],
    Awaitable[tuple[list[common_pb2.Tensor], R]],
]
"""Sends a batch to the given instance (None: one the dispatch finds). It is called when
the batch goes out, before the next batch is formed: it counts the batch on that instance
then, so that the next `pick` sees it."""
Pick = Callable[[], common_pb2.Instance | None]


@dataclass
class _Member(Generic[R]):
    tensor: common_pb2.Tensor
    deadline: float
    future: asyncio.Future[tuple[common_pb2.Tensor, R, int]]


class Batcher(Generic[R]):
    def __init__(
        self, function: str, size: int, dispatch: Dispatch[R], pick: Pick, max_size: int | None = None
    ) -> None:
        self.function = function
        self.size = size
        """The app's planned batch: for an instance of unknown batch, or none ready."""
        self.max_size = max_size if max_size is not None else size
        """The model's largest batch: no instance is handed more."""
        self.dispatch = dispatch
        self.pick = pick
        self.pending: list[_Member[R]] = []
        self.flush_at = float("inf")
        self.timer: asyncio.TimerHandle | None = None
        self.in_flight: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches sent (for tests and reports)

    async def submit(
        self, tensor: common_pb2.Tensor, deadline: float, wait: float
    ) -> tuple[common_pb2.Tensor, R, int]:
        """(output, the dispatch's result, batch size) for one request."""
        loop = asyncio.get_running_loop()
        member: _Member[R] = _Member(tensor, deadline, loop.create_future())
        self.pending.append(member)
        if wait <= 0 or len(self.pending) >= self.size_on(self.pick()):
            self._flush()
        else:
            at = time.monotonic() + wait
            if at < self.flush_at:
                self.flush_at = at
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = loop.call_later(wait, self._flush)
        try:
            return await asyncio.wait_for(member.future, deadline - time.monotonic())
        except TimeoutError:
            raise RpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"stage {self.function}: ran out of time in its batch"
            ) from None

    def size_on(self, inst: common_pb2.Instance | None) -> int:
        """The most requests one batch on `inst` holds."""
        if inst is None or inst.batch <= 0:
            return max(1, self.size)
        return max(1, min(inst.batch, self.max_size))

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.flush_at = float("inf")
        loop = asyncio.get_running_loop()
        while self.pending:
            inst = self.pick()
            size = self.size_on(inst)
            batch = [m for m in self.pending[:size] if not m.future.done()]
            del self.pending[:size]
            if batch:
                self.batches += 1
                sent = self.dispatch([m.tensor for m in batch], max(m.deadline for m in batch), inst)
                task = loop.create_task(self._send(batch, sent))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)

    async def _send(
        self, batch: list[_Member[R]], sent: Awaitable[tuple[list[common_pb2.Tensor], R]]
    ) -> None:
        try:
            outputs, result = await sent
        except Exception as exc:
            for m in batch:
                if not m.future.done():
                    m.future.set_exception(exc)
            return
        for m, out in zip(batch, outputs, strict=False):
            if not m.future.done():
                m.future.set_result((out, result, len(batch)))
        if len(outputs) != len(batch):
            for m in batch[len(outputs) :]:
                if not m.future.done():
                    m.future.set_exception(
                        RpcError(
                            grpc.StatusCode.INTERNAL,
                            f"stage {self.function}: the worker answered {len(outputs)} of "
                            f"{len(batch)} inputs",
                        )
                    )

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for task in list(self.in_flight):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
