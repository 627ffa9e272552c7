"""The predictor's mirrored arrival history against real Redis: it answers what a full read
of the window answers, while reading only the entries recorded since its last read."""

from __future__ import annotations

import time

import pytest

from smiless.services.predictor import history
from smiless.services.predictor.history import ArrivalHistory
from smiless.store import Store, arrivals_key

RETENTION = 7 * 86400.0


async def _same_as_full_read(h: ArrivalHistory, store: Store, app: str, start: float, end: float) -> None:
    got = await h.window(app, start, end)
    assert got.tolist() == await store.arrivals(app, start, end)


async def test_reads_only_new_entries_and_answers_like_a_full_read(redis_url: str) -> None:
    store = Store(redis_url)
    h = ArrivalHistory(store)
    try:
        now = time.time()
        first = [now - 100 + i * 0.37 for i in range(200)]
        await store.record_arrivals("a", first, RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now)
        assert h.entries_read == 200 and h.full_reads == 1
        more = [now + 1 + i * 0.01 for i in range(30)]
        await store.record_arrivals("a", more, RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now + 2)
        assert h.entries_read == 230, "the second read fetched only the 30 new entries"
        # the window moves forward: what falls out of it is let go, the rest answered the same
        await _same_as_full_read(h, store, "a", now - 50, now + 2)
        await _same_as_full_read(h, store, "a", now - 10, now + 1.1)  # an end inside the entries
        assert h.entries_read == 230 and h.full_reads == 1
        # a window reaching further back than what was kept is read afresh
        await _same_as_full_read(h, store, "a", now - 3600, now + 2)
        assert h.full_reads == 2
    finally:
        await store.close()


async def test_a_history_replaced_behind_its_back_is_read_afresh(redis_url: str) -> None:
    store = Store(redis_url)
    h = ArrivalHistory(store)
    try:
        now = time.time()
        await store.record_arrivals("a", [now - 50 + i for i in range(40)], RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now)
        # replaced by a shorter, older history: the mirror's last entry is gone
        await store.replace_arrivals("a", [now - 80 + i * 0.5 for i in range(10)], RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now)
        assert h.full_reads == 2
        # replaced by one whose last entry has the same id but another time
        await store.replace_arrivals("a", [now - 90, now - 76 + 0.0001], RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now)
        assert h.full_reads == 3
        # deleted: nothing
        await store.redis.delete(arrivals_key("a"))
        assert (await h.window("a", now - 3600, now)).size == 0
    finally:
        await store.close()


async def test_entries_trimmed_by_retention_are_dropped(redis_url: str) -> None:
    store = Store(redis_url)
    h = ArrivalHistory(store)
    try:
        now = time.time()
        await store.record_arrivals("a", [now - 500 + i for i in range(400)], RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now)
        await store.redis.xtrim(arrivals_key("a"), minid=int((now - 300) * 1000))  # exact, not ~
        await store.record_arrivals("a", [now + 0.5], RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now + 1)
        assert h.full_reads == 1, "trimming the oldest entries needs no full read"
    finally:
        await store.close()


async def test_an_idle_app_is_not_read_again_and_again(redis_url: str) -> None:
    store = Store(redis_url)
    h = ArrivalHistory(store)
    try:
        now = time.time()
        await store.record_arrivals("a", [now - 500 + i for i in range(100)], RETENTION)
        for k in range(5):  # the window has moved past every arrival
            assert (await h.window("a", now - 60 + k, now + k)).size == 0
        assert h.entries_read == 100 and h.full_reads == 1
    finally:
        await store.close()


async def test_a_large_history_is_read_in_pieces(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "READ_CHUNK", 64)
    store = Store(redis_url)
    h = ArrivalHistory(store)
    try:
        now = time.time()
        await store.record_arrivals("a", [now - 300 + i * 0.1 for i in range(1000)], RETENTION)
        await _same_as_full_read(h, store, "a", now - 3600, now)
        assert h.entries_read == 1000
    finally:
        await store.close()
