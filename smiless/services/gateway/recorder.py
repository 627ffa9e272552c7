"""Buffered, batched recording of arrivals, stage latencies and invocation results, off the
hot path.

Every arrival and every invocation result is kept (the predictor and the reports need all
of them); warm stage latencies are sampled, at most `stage_samples_per_s` per (model,
config, batch) and second, which is plenty for the profiler's refit (it reads the latest
1,000) and keeps Redis writes per invocation near two under load.

Invoke only appends to in-memory buffers; a background task hands them to Redis every
`interval_s` in one pipeline per kind. While Redis is down the buffers keep growing up to
`max_buffer` records each; beyond that the oldest record is dropped and counted in
`dropped` (GetStatus reports it as `records_dropped` and the gateway as degraded). Once
Redis is back the buffered records are written with their original times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from typing import TypeVar

from smiless import logs
from smiless.aio import stop_task
from smiless.store import InvocationRecord, StageLatency, Store, StoreError

log = logging.getLogger("smiless.gateway.recorder")
STAGE_SAMPLES_KEPT = 1000  # per (model, config): enough for the profiler's drift check
T = TypeVar("T")


class Recorder:
    def __init__(
        self,
        store: Store,
        retention_s: float,
        keep: int,
        interval_s: float = 0.2,
        max_buffer: int = 100_000,
        stage_samples_per_s: float = 20.0,
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self.keep = keep
        self.interval_s = interval_s
        self.max_buffer = max_buffer
        self.arrivals: deque[tuple[str, float]] = deque()
        self.records: deque[tuple[str, InvocationRecord]] = deque()
        self.stages: deque[StageLatency] = deque()
        self.dropped = 0
        self.healthy = True
        self.stage_gap_s = 1.0 / stage_samples_per_s
        self._last_stage: dict[tuple[str, str, int], float] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered(self) -> int:
        return len(self.arrivals) + len(self.records) + len(self.stages)

    def _add(self, buf: deque[T], item: T) -> None:
        if len(buf) >= self.max_buffer:
            buf.popleft()
            self.dropped += 1
        buf.append(item)

    def arrival(self, app: str, at: float) -> None:
        self._add(self.arrivals, (app, at))

    def invocation(self, app: str, record: InvocationRecord) -> None:
        self._add(self.records, (app, record))

    def stage(self, model: str, config: str, batch: int, seconds: float, now: float) -> None:
        """Keep a warm stage latency unless one of the same kind was kept within the gap."""
        key = (model, config, batch)
        if now - self._last_stage.get(key, -1e18) >= self.stage_gap_s:
            self._last_stage[key] = now
            self._add(self.stages, StageLatency(model, config, batch, seconds))

    def _put_back(self, buf: deque[T], taken: deque[T]) -> None:
        """Return unwritten records in front of what arrived meanwhile, within the bound."""
        taken.extend(buf)
        excess = len(taken) - self.max_buffer
        for _ in range(max(0, excess)):
            taken.popleft()
            self.dropped += 1
        buf.clear()
        buf.extend(taken)

    async def flush(self) -> None:
        # Take the buffers whole: records appended during the writes go to fresh ones.
        arrivals, self.arrivals = self.arrivals, deque()
        records, self.records = self.records, deque()
        stages, self.stages = self.stages, deque()
        by_app: dict[str, list[float]] = defaultdict(list)
        for app, at in arrivals:
            by_app[app].append(at)
        rec_by_app: dict[str, list[InvocationRecord]] = defaultdict(list)
        for app, r in records:
            rec_by_app[app].append(r)
        done = [False, False, False]
        try:
            for app, times in by_app.items():
                await self.store.record_arrivals(app, sorted(times), self.retention_s)
            done[0] = True
            for app, recs in rec_by_app.items():
                await self.store.record_invocations(app, recs, self.keep)
            done[1] = True
            await self.store.record_stage_latencies(list(stages), STAGE_SAMPLES_KEPT)
            done[2] = True
        except (StoreError, OSError) as exc:
            if self.healthy:
                logs.event(log, "recording buffered: redis unavailable", logging.WARNING, error=str(exc))
            self.healthy = False
            # A kind written in part may be written twice later: a duplicate beats a loss.
            if not done[0]:
                self._put_back(self.arrivals, arrivals)
            if not done[1]:
                self._put_back(self.records, records)
            if not done[2]:
                self._put_back(self.stages, stages)
            return
        if not self.healthy:
            logs.event(log, "recording resumed", dropped=self.dropped)
        self.healthy = True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.arrivals or self.records or self.stages:
                await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await stop_task(self._task)
        with contextlib.suppress(Exception):
            await self.flush()
