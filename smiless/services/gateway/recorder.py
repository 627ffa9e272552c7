"""Buffered, batched recording of arrivals and invocation results, off the hot path.

Invoke only appends to an in-memory buffer; a background task flushes it to Redis
every `interval_s`. While Redis is down the buffer keeps up to `max_buffer` records,
then drops the oldest and counts them in `dropped` (reported by GetStatus).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque

from smiless import logs
from smiless.store import InvocationRecord, StageLatency, Store, StoreError

log = logging.getLogger("smiless.gateway.recorder")
STAGE_SAMPLES_KEPT = 1000  # per (model, config): enough for the profiler's drift check


class Recorder:
    def __init__(
        self, store: Store, retention_s: float, keep: int, interval_s: float = 0.2, max_buffer: int = 100_000
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self.keep = keep
        self.interval_s = interval_s
        self.arrivals: deque[tuple[str, float]] = deque(maxlen=max_buffer)
        self.records: deque[tuple[str, InvocationRecord]] = deque(maxlen=max_buffer)
        self.stages: deque[StageLatency] = deque(maxlen=max_buffer)
        self.dropped = 0
        self.healthy = True
        self._task: asyncio.Task[None] | None = None

    def arrival(self, app: str, at: float) -> None:
        if len(self.arrivals) == self.arrivals.maxlen:
            self.dropped += 1
        self.arrivals.append((app, at))

    def invocation(self, app: str, record: InvocationRecord) -> None:
        if len(self.records) == self.records.maxlen:
            self.dropped += 1
        self.records.append((app, record))

    def stage(self, sample: StageLatency) -> None:
        if len(self.stages) == self.stages.maxlen:
            self.dropped += 1
        self.stages.append(sample)

    async def flush(self) -> None:
        arrivals, records, stages = list(self.arrivals), list(self.records), list(self.stages)
        by_app: dict[str, list[float]] = defaultdict(list)
        for app, at in arrivals:
            by_app[app].append(at)
        rec_by_app: dict[str, list[InvocationRecord]] = defaultdict(list)
        for app, r in records:
            rec_by_app[app].append(r)
        try:
            for app, times in by_app.items():
                await self.store.record_arrivals(app, sorted(times), self.retention_s)
            for app, recs in rec_by_app.items():
                await self.store.record_invocations(app, recs, self.keep)
            await self.store.record_stage_latencies(stages, STAGE_SAMPLES_KEPT)
        except (StoreError, OSError) as exc:
            if self.healthy:
                logs.event(log, "recording buffered: redis unavailable", logging.WARNING, error=str(exc))
            self.healthy = False
            return
        self.healthy = True
        for _ in arrivals:
            self.arrivals.popleft()
        for _ in records:
            self.records.popleft()
        for _ in stages:
            self.stages.popleft()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.arrivals or self.records or self.stages:
                await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()
