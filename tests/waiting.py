"""Waiting for the stack: poll a condition until it holds, or fail naming what never came.

A test waits for a refresh, a notification or a flush by checking its effect, never by a
fixed sleep: the wait is as short as the stack allows and a slow machine only waits longer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from smiless.v1 import worker_pb2, worker_pb2_grpc

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


async def wait_until(
    predicate: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Await `predicate()` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        last = await predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Call `predicate()` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last)
        time.sleep(interval)


async def until_in_flight(channel: grpc.aio.Channel, n: int, timeout: float = 10.0) -> None:
    """Until the worker behind `channel` has `n` requests in progress (its own count)."""
    stub = worker_pb2_grpc.WorkerStub(channel)

    async def arrived() -> bool:
        info: worker_pb2.DescribeResponse = await stub.Describe(worker_pb2.DescribeRequest(), timeout=5)
        return info.in_flight == n

    await wait_until(arrived, timeout, f"{n} request(s) in flight on the worker")
