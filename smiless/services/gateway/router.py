"""Routing a stage to an instance: the cached registry first, else the optimizer.

A stage goes to the READY instance of its function with the fewest outstanding requests
(ties rotate, so several instances of a scaled-out function share the load). When none is
ready the router asks the optimizer (`EnsureInstance`) and waits, within the stage's
deadline; concurrent stages of the same function share one such request. The optimizer
being unreachable fails at once with UNAVAILABLE (channels do not wait for a connection),
so only cold paths depend on it.

Channels and worker streams (streams.py) are made once per address and closed when the
registry drops the instance behind them; a grpc.aio channel belongs to the loop it was made
on, so they are made lazily inside the serving loop.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from smiless.config import Settings
from smiless.protoutil import set_seconds
from smiless.server import RpcError, grpc_options
from smiless.services.gateway.registry import InstanceRegistry, Key
from smiless.services.gateway.streams import WorkerStream
from smiless.v1 import common_pb2, optimizer_pb2, optimizer_pb2_grpc, worker_pb2_grpc

# Reconnect quickly to a restarted worker or optimizer instead of gRPC's default backoff
# (up to two minutes), during which every call would fail fast with UNAVAILABLE.
REPLACEMENT_WAIT_S = 2.0  # how long the optimizer may keep offering an instance that failed
# gRPC's own retries are off: the data path retries once on another instance itself.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]


def started_after(inst: common_pb2.Instance, arrived: float) -> bool:
    """Whether the instance became ready after `arrived` (epoch seconds); unknown: yes."""
    ready = inst.ready_at.ToNanoseconds() / 1e9 if inst.HasField("ready_at") else None
    return ready is None or ready > arrived


class Router:
    def __init__(self, settings: Settings, registry: InstanceRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.outstanding: dict[str, int] = {}  # instance id -> requests in flight there
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.workers: dict[str, WorkerStream] = {}
        self._optimizer: optimizer_pb2_grpc.OptimizerStub | None = None
        self._ensuring: dict[Key, asyncio.Task[common_pb2.Instance]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._turn = 0

    # --- channels ------------------------------------------------------------------------
    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self.channels.get(address)
        if ch is None:
            ch = grpc.aio.insecure_channel(address, options=[*grpc_options(self.settings), *CHANNEL_OPTIONS])
            self.channels[address] = ch
        return ch

    def worker(self, address: str) -> WorkerStream:
        w = self.workers.get(address)
        if w is None:
            w = WorkerStream(worker_pb2_grpc.WorkerStub(self.channel(address)), self.settings.worker_streams)
            self.workers[address] = w
        return w

    @property
    def optimizer(self) -> optimizer_pb2_grpc.OptimizerStub:
        if self._optimizer is None:
            self._optimizer = optimizer_pb2_grpc.OptimizerStub(self.channel(self.settings.optimizer_addr))
        return self._optimizer

    def instance_removed(self, inst: common_pb2.Instance) -> None:
        """Close the channel of an instance the registry dropped (its port may be reused)."""
        self.outstanding.pop(inst.id, None)
        if not inst.address or any(i.address == inst.address for i in self.registry.instances.values()):
            return
        w = self.workers.pop(inst.address, None)
        ch = self.channels.pop(inst.address, None)
        if ch is not None or w is not None:
            task = asyncio.get_running_loop().create_task(self._close(w, ch))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(w: WorkerStream | None, ch: grpc.aio.Channel | None) -> None:
        if w is not None:
            await w.close()
        if ch is not None:
            await ch.close(grace=1.0)

    async def close(self) -> None:
        for task in self._ensuring.values():
            task.cancel()
        for w in self.workers.values():
            await w.close()
        for ch in self.channels.values():
            await ch.close()
        self.channels.clear()
        self.workers.clear()

    # --- choosing ------------------------------------------------------------------------
    def pick(
        self, app: str, function: str, exclude: frozenset[str] = frozenset()
    ) -> common_pb2.Instance | None:
        """The least loaded usable READY instance, or None."""
        found = self.registry.candidates(app, function, exclude)
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        self._turn += 1
        n = len(found)
        best, best_load = found[0], 1 << 62
        for k in range(n):
            inst = found[(self._turn + k) % n]
            load = self.outstanding.get(inst.id, 0)
            if load < best_load:
                best, best_load = inst, load
        return best

    def prestart(self, app: str, functions: list[str], deadline: float) -> None:
        """Ask the optimizer now for each of `functions` with no ready instance: a cold DAG
        then starts instances ahead of the stages that need them (this invocation would
        start them moments later anyway). Stages pick the requests up in `acquire`; a
        failure here is left for `acquire` to meet again."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        for function in functions:
            key = (app, function)
            if key in self._ensuring or self.registry.ready.get(key):
                continue
            task = asyncio.get_running_loop().create_task(self._ensure(app, function, remaining))
            self._ensuring[key] = task
            task.add_done_callback(lambda t, key=key: self._forget_ensure(key, t))  # type: ignore[misc]

    async def acquire(
        self, app: str, function: str, deadline: float, exclude: frozenset[str] = frozenset()
    ) -> tuple[common_pb2.Instance, bool]:
        """(instance, cold): cold when the instance became ready only after the stage arrived
        (its `ready_at`), i.e. the stage waited for a start. An instance the optimizer hands
        out that was ready before (pre-warmed, its notification still on the way) is warm."""
        inst = self.pick(app, function, exclude)
        if inst is not None:
            return inst, False
        stale_since: float | None = None
        arrived = time.time()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"stage {function}: ran out of time waiting for an instance",
                )
            key = (app, function)
            task = self._ensuring.get(key)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._ensure(app, function, remaining))
                self._ensuring[key] = task
                task.add_done_callback(lambda t, key=key: self._forget_ensure(key, t))  # type: ignore[misc]
            try:
                got = await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                continue  # the loop reports the deadline
            except RpcError as exc:
                # A shorter-lived caller's request ran out; this stage may still have time.
                if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline - time.monotonic() > 0.01:
                    continue
                raise
            if got.id not in exclude and got.id not in self.registry.suspects:
                return got, started_after(got, arrived)
            # The optimizer still offers an instance that failed; its watcher notices a dead
            # worker within moments. Wait for registry news, but not for long: an instance
            # that fails while alive would otherwise hold the stage until its deadline.
            now = time.monotonic()
            if stale_since is None:
                stale_since = now
            elif now - stale_since > REPLACEMENT_WAIT_S:
                if got.id in exclude:
                    raise RpcError(
                        grpc.StatusCode.UNAVAILABLE,
                        f"stage {function}: instance {got.id} failed and no other instance became ready",
                    )
                return got, started_after(got, arrived)  # only suspected (a call failed there)
            await self.registry.changed(min(0.25, max(0.0, deadline - now)))
            inst = self.pick(app, function, exclude)
            if inst is not None:
                return inst, started_after(inst, arrived)

    def _forget_ensure(self, key: Key, task: asyncio.Task[common_pb2.Instance]) -> None:
        if self._ensuring.get(key) is task:
            del self._ensuring[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody waits for any more is not an error

    async def _ensure(self, app: str, function: str, timeout: float) -> common_pb2.Instance:
        req = optimizer_pb2.EnsureInstanceRequest(app=app, function=function)
        set_seconds(req.deadline, timeout)
        try:
            resp = await self.optimizer.EnsureInstance(req, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise RpcError(code, f"stage {function}: no instance ready before its deadline") from exc
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN):
                raise RpcError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"stage {function}: no ready instance and the optimizer is unavailable: {exc.details()}",
                ) from exc
            raise RpcError(code, f"stage {function}: optimizer: {exc.details()}") from exc
        inst: common_pb2.Instance = resp.instance
        return inst
