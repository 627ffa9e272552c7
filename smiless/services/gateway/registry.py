"""The gateway's copy of the instance registry.

The optimizer's controller writes every instance to `smiless:instances` and publishes its id
on `smiless:instances:events` (Store.put_instance). The gateway keeps the READY instances in
memory so that routing a stage never waits on Redis: a background task subscribes, reloads
the whole registry (after every (re)subscription, so nothing published while it was away is
missed), then applies each change as its id arrives. While Redis is down the last known
registry stays in use; instances that fail calls are set aside locally (`suspect`) until the
registry says something new about them or `suspect_s` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from smiless import logs
from smiless.aio import stop_task
from smiless.store import Store, StoreError
from smiless.v1 import common_pb2

log = logging.getLogger("smiless.gateway.registry")
READY = common_pb2.INSTANCE_STATE_READY
Key = tuple[str, str]  # (app, function)


class InstanceRegistry:
    def __init__(
        self,
        store: Store,
        on_removed: Callable[[common_pb2.Instance], None] | None = None,
        suspect_s: float = 5.0,
        retry_s: float = 0.5,
    ) -> None:
        self.store = store
        self.on_removed = on_removed
        self.suspect_s = suspect_s
        self.retry_s = retry_s
        self.instances: dict[str, common_pb2.Instance] = {}
        self.ready: dict[Key, list[common_pb2.Instance]] = {}
        self.suspects: dict[str, float] = {}  # instance id -> monotonic time it may be used again
        self.connected = False
        self.version = 0  # bumped on every change, so waiters can tell something happened
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- reading -------------------------------------------------------------------------
    def candidates(
        self, app: str, function: str, exclude: frozenset[str] = frozenset()
    ) -> list[common_pb2.Instance]:
        """The READY instances of a function that are neither excluded nor suspect."""
        found = self.ready.get((app, function))
        if not found:
            return []
        now = time.monotonic()
        out = []
        for inst in found:
            if inst.id in exclude:
                continue
            until = self.suspects.get(inst.id)
            if until is not None:
                if until > now:
                    continue
                del self.suspects[inst.id]
            out.append(inst)
        return out

    def get(self, instance_id: str) -> common_pb2.Instance | None:
        return self.instances.get(instance_id)

    async def changed(self, timeout: float) -> None:
        """Wait (at most `timeout`) for the next change of the registry."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    # --- writing -------------------------------------------------------------------------
    def suspect(self, instance_id: str) -> None:
        """A call to this instance failed: route around it until the registry says more."""
        self.suspects[instance_id] = time.monotonic() + self.suspect_s

    def apply(self, instance_id: str, inst: common_pb2.Instance | None) -> None:
        """Take the current registry entry of one instance (None: it is gone)."""
        old = self.instances.pop(instance_id, None)
        if old is not None:
            key = (old.app, old.function)
            kept = [i for i in self.ready.get(key, []) if i.id != instance_id]
            if kept:
                self.ready[key] = kept
            else:
                self.ready.pop(key, None)
        if inst is not None and inst.state in (
            common_pb2.INSTANCE_STATE_STOPPED,
            common_pb2.INSTANCE_STATE_FAILED,
        ):
            inst = None
        if inst is not None:
            self.instances[instance_id] = inst
            if inst.state == READY and inst.address:
                self.ready.setdefault((inst.app, inst.function), []).append(inst)
            if old is None or old.state != inst.state or old.address != inst.address:
                self.suspects.pop(instance_id, None)  # news about it: give it another chance
        else:
            self.suspects.pop(instance_id, None)
        if old is not None and (inst is None or inst.address != old.address) and self.on_removed:
            self.on_removed(old)
        self._bump()

    def replace_all(self, entries: list[common_pb2.Instance]) -> None:
        fresh = {i.id: i for i in entries}
        for gone in [i for i in self.instances if i not in fresh]:
            self.apply(gone, None)
        for inst in entries:
            self.apply(inst.id, inst)

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    # --- following Redis -----------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                async for instance_id in self.store.instance_events():
                    if instance_id == "*":
                        self.replace_all(await self.store.list_instances())
                        if not self.connected:
                            logs.event(log, "instance registry loaded", instances=len(self.instances))
                        self.connected = True
                    else:
                        self.apply(instance_id, await self.store.get_instance(instance_id))
            except asyncio.CancelledError:
                raise
            except (StoreError, OSError) as exc:
                if self.connected:
                    logs.event(
                        log,
                        "instance registry: redis lost; serving the cached copy",
                        logging.WARNING,
                        error=str(exc),
                    )
                self.connected = False
            await asyncio.sleep(self.retry_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        await stop_task(self._task)
