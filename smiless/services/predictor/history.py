"""The predictor's arrival history: each app's Redis stream mirrored in memory.

Under load the controller asks for a forecast every tick (new arrivals move it), and the
trainer reads the history every round. Reading the whole window from Redis each time cost
CPU in proportion to the history: ~450 ms (Redis and redis-py) per 30,000 arrivals, so a
busy app kept the predictor and Redis near a core. The mirror reads only the entries
recorded since its last read and answers the same arrivals `Store.arrivals(app, start, end)`
would: entries whose id (the millisecond of the arrival) lies in [start, end].

It stays exact when the stream changes under it: a history replaced (`LoadHistory` with
replace, here or by anyone) or trimmed past its last entry is read afresh, entries that
retention trimmed are dropped, and a window that starts before what the mirror kept is read
afresh too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from smiless.store import Store

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
READ_CHUNK = 50_000
"""Entries per read: a large history is mirrored in pieces, never in one reply."""


def _empty_ints() -> IntArray:
    return np.zeros(0, dtype=np.int64)


def _empty_floats() -> FloatArray:
    return np.zeros(0, dtype=np.float64)


@dataclass
class _Mirror:
    """One app's entries in stream order: id (ms, seq) and time."""

    ms: IntArray = field(default_factory=_empty_ints)
    seq: IntArray = field(default_factory=_empty_ints)
    times: FloatArray = field(default_factory=_empty_floats)
    floor_ms: int | None = None  # entries before this millisecond were let go (None: none were)
    last: tuple[int, int] | None = None  # the last entry read (kept when the window moved past it)
    last_time: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def clear(self) -> None:
        self.ms, self.seq, self.times = _empty_ints(), _empty_ints(), _empty_floats()
        self.floor_ms = self.last = self.last_time = None

    def cut(self, i: int) -> None:
        """Drop the first `i` entries."""
        if i > 0:
            self.ms, self.seq, self.times = self.ms[i:], self.seq[i:], self.times[i:]

    def index_of(self, ms: int, seq: int) -> int:
        """Where entry (ms, seq) is or would be (ids are sorted)."""
        i = int(np.searchsorted(self.ms, ms, "left"))
        j = int(np.searchsorted(self.ms, ms, "right"))
        return i + int(np.searchsorted(self.seq[i:j], seq, "left"))


class ArrivalHistory:
    """Every followed app's arrivals, kept in step with Redis by incremental reads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._apps: dict[str, _Mirror] = {}
        self.entries_read = 0
        """Stream entries read from Redis so far (what the mirror saves shows here)."""
        self.full_reads = 0
        """Times an app's history was read from its first entry."""

    def forget(self, app: str) -> None:
        """Drop an app's mirror (its history was replaced, or the app deleted)."""
        self._apps.pop(app, None)

    def keep_only(self, apps: set[str]) -> None:
        for app in set(self._apps) - apps:
            del self._apps[app]

    async def window(self, app: str, start: float, end: float) -> FloatArray:
        """The arrival times whose entry ids lie in [start, end] to the millisecond (what
        `Store.arrivals(app, start, end)` returns). Entries older than `start` are let go:
        callers move their window forward (a window reaching further back is read afresh)."""
        lo, hi = int(start * 1000), int(end * 1000)
        m = self._apps.setdefault(app, _Mirror())
        async with m.lock:
            if m.floor_ms is not None and lo < m.floor_ms:
                m.clear()
            await self._catch_up(app, m)
            i0 = int(np.searchsorted(m.ms, lo, "left"))
            m.cut(i0)
            m.floor_ms = lo if m.floor_ms is None else max(m.floor_ms, lo)
            i1 = int(np.searchsorted(m.ms, hi, "right"))
            return m.times[:i1].copy()

    async def _catch_up(self, app: str, m: _Mirror) -> None:
        while True:
            last = m.last
            got = await self.store.arrivals_after(app, last, READ_CHUNK)
            if last is not None and (not got.known or got.known_time != m.last_time):
                m.clear()  # replaced, or trimmed past what we read: read it all again
                continue
            if last is None and got.ids:
                self.full_reads += 1
            self.entries_read += len(got.ids)
            if got.ids:
                ids = np.asarray(got.ids, dtype=np.int64)
                m.ms = np.concatenate([m.ms, ids[:, 0]])
                m.seq = np.concatenate([m.seq, ids[:, 1]])
                m.times = np.concatenate([m.times, np.asarray(got.times, dtype=np.float64)])
                m.last, m.last_time = got.ids[-1], got.times[-1]
            if got.first_id is not None:  # retention trimmed the oldest entries
                m.cut(m.index_of(*got.first_id))
            if len(got.ids) < READ_CHUNK:
                return
