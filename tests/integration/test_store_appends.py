"""The Store's batched appends (one script call per batch) against real Redis: what is
written reads back exactly, ids keep growing, retention and length bounds apply."""

from __future__ import annotations

import time

from smiless.store import InvocationRecord, Store, arrivals_key, invocations_key


async def test_arrivals_round_trip_and_retention(redis_url: str) -> None:
    store = Store(redis_url)
    try:
        now = time.time()
        old = [now - 7200 + i * 0.01 for i in range(300)]
        await store.record_arrivals("a", old, retention_s=86400)
        assert len(await store.arrivals("a")) == 300
        fresh = [now - 1 + i * 0.000_25 for i in range(8)]  # several in one millisecond
        await store.record_arrivals("a", fresh, retention_s=3600)  # trims what is older
        got = await store.arrivals("a")
        assert got[-8:] == [float(f"{t:.6f}") for t in fresh]
        assert len(got) <= 8 + 100, "trimmed by whole stream nodes (approximate MINID)"
        rows = await store.redis.xrange(arrivals_key("a"), "-", "+", count=None)
        assert [int(i.split(b"-")[0]) for i, _ in rows[-8:]] == [int(t * 1000) for t in fresh]
        assert await store.last_arrival("a") == got[-1]
    finally:
        await store.close()


async def test_invocation_ids_keep_growing_when_records_complete_out_of_order(redis_url: str) -> None:
    store = Store(redis_url)
    try:
        now = time.time()
        odd = 'id with spaces, "quotes"\nand ü'
        await store.record_invocations("a", [InvocationRecord(now, 12.5, True, False, "late")], keep=1000)
        earlier = [
            InvocationRecord(now - 0.5, 3.25, False, True, odd),
            InvocationRecord(now - 0.7, 1.0, True, False, "b"),
        ]
        await store.record_invocations("a", earlier, keep=1000)  # received before, done after
        rows = await store.redis.xrange(invocations_key("a"))
        ms = [int(i.split(b"-")[0]) for i, _ in rows]
        assert ms == sorted(ms) and ms[0] == int(now * 1000) and ms[1:] == [ms[0], ms[0]]
        got = await store.invocations("a")
        assert [(r.request_id, r.latency_ms, r.sla_met, r.cold) for r in got] == [
            ("late", 12.5, True, False),
            ("b", 1.0, True, False),
            (odd, 3.25, False, True),
        ]
        # the length bound (approximate trimming keeps at least `keep`, and not without end)
        many = [InvocationRecord(now + 1 + i / 1000, 1.0, True, False, f"r{i}") for i in range(3000)]
        await store.record_invocations("a", many, keep=500)
        assert 500 <= await store.redis.xlen(invocations_key("a")) < 3003
    finally:
        await store.close()
