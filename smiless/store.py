"""The Redis layer: the one place that knows the key schema.

Key schema (all keys start with `smiless:`; values are serialised protobuf messages
unless noted):

| key                                   | type   | holds                                             |
|---------------------------------------|--------|---------------------------------------------------|
| smiless:apps                          | hash   | app name -> gateway.App                           |
| smiless:profiles:{model}              | hash   | hardware kind ("cpu"/"gpu") -> profiler.Profile   |
| smiless:profile-versions:{model}:{kind} | list | every stored Profile, oldest first                |
| smiless:profile-runs:{model}          | hash   | an unfinished profile run: step -> JSON result,   |
|                                       |        | "__params__" -> the run's parameters (resume)     |
| smiless:profile-lock:{model}          | string | owner of the running profile (SET NX, expiring)   |
| smiless:arrivals:{app}                | stream | one entry per arrival; the entry id is the time   |
| smiless:predictors                    | hash   | app name -> serialised predictor (to_bytes())     |
| smiless:plans                         | hash   | app name -> optimizer.AppPlan                     |
| smiless:instances                     | hash   | instance id -> common.Instance (live registry)    |
| smiless:instances:events              | pubsub | instance ids whose registry entry changed         |
| smiless:lifetimes                     | hash   | instance id -> common.Instance (start/ready/stop, |
|                                       |        | config, price): the basis of every cost figure    |
| smiless:invocations:{app}             | stream | fields: latency_ms, sla_met, cold, request_id     |
| smiless:stage-latencies:{model}:{config} | stream | warm stage latencies the gateway saw: batch,    |
|                                       |        | seconds (the profiler's online refit reads them)  |

Streams give O(1) appends, range reads by time (entry ids are milliseconds since the
epoch) and bounded retention (MAXLEN / MINID trimming).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smiless.v1 import common_pb2, gateway_pb2, optimizer_pb2, profiler_pb2

PREFIX = "smiless:"
APPS = PREFIX + "apps"
PLANS = PREFIX + "plans"
PREDICTORS = PREFIX + "predictors"
INSTANCES = PREFIX + "instances"
INSTANCE_EVENTS = PREFIX + "instances:events"
LIFETIMES = PREFIX + "lifetimes"

StoreError = RedisError


def profiles_key(model: str) -> str:
    return f"{PREFIX}profiles:{model}"


def profile_versions_key(model: str, kind: str) -> str:
    return f"{PREFIX}profile-versions:{model}:{kind}"


def profile_run_key(model: str) -> str:
    return f"{PREFIX}profile-runs:{model}"


def profile_lock_key(model: str) -> str:
    return f"{PREFIX}profile-lock:{model}"


def arrivals_key(app: str) -> str:
    return f"{PREFIX}arrivals:{app}"


def stage_latencies_key(model: str, config: str) -> str:
    return f"{PREFIX}stage-latencies:{model}:{config}"


def invocations_key(app: str) -> str:
    return f"{PREFIX}invocations:{app}"


@dataclass(frozen=True)
class StageLatency:
    """One warm stage call as the gateway saw it (Infer round trip, no queueing)."""

    model: str
    config: str
    batch: int
    seconds: float


@dataclass(frozen=True)
class InvocationRecord:
    at: float  # epoch seconds of the gateway's receipt
    latency_ms: float
    sla_met: bool
    cold: bool
    request_id: str


# Appends in one script call instead of a pipeline of XADDs: redis-py builds every pipelined
# command in Python, which cost the gateway ~40 µs of CPU per invocation (an arrival and a
# result); one call with flat arguments costs a fraction of it.
# Arrivals: ARGV[1] the MINID to trim to (approximate), then (ms, time) per arrival.
_APPEND_ARRIVALS = """
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], ARGV[i] .. '-*', 't', ARGV[i + 1])
end
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[1])
return 0
"""
# Invocation records: ARGV[1] the MAXLEN to keep (approximate), then (ms, latency_ms,
# sla_met, cold, request_id) per record, by receipt time. Entry ids must grow, but records
# come in completion order (a slow invocation ends after a faster, later one): such a record
# takes the stream's newest millisecond, at most its own latency late.
_APPEND_INVOCATIONS = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
for i = 2, #ARGV, 5 do
  local ms = tonumber(ARGV[i])
  if ms < last then ms = last end
  last = ms
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], string.format('%d-*', ms),
    'latency_ms', ARGV[i + 1], 'sla_met', ARGV[i + 2], 'cold', ARGV[i + 3], 'request_id', ARGV[i + 4])
end
return 0
"""


# The arrivals recorded after entry ARGV[1] ('' for all), at most ARGV[2] of them, for the
# predictor's incremental history. One atomic read: line 1 is 1 when ARGV[1] is still in the
# stream (0: the history was replaced or trimmed past it), line 2 that entry's time, line 3
# the stream's first id (what retention left), then "id time" per entry (a flat string: 30,000
# entries read in ~85 ms here, against ~450 ms for XRANGE parsed by redis-py).
_READ_ARRIVALS_AFTER = """
local function t_of(f)
  for j = 1, #f, 2 do
    if f[j] == 't' then return f[j + 1] end
  end
  return ''
end
local after, known, check = ARGV[1], '1', ''
if after ~= '' then
  local r = redis.call('XRANGE', KEYS[1], after, after)
  if #r == 0 then known = '0' else check = t_of(r[1][2]) end
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local out = {known, check, first[1] and first[1][1] or ''}
if known == '1' then
  local lo = after == '' and '-' or '(' .. after
  for _, row in ipairs(redis.call('XRANGE', KEYS[1], lo, '+', 'COUNT', ARGV[2])) do
    out[#out + 1] = row[1] .. ' ' .. t_of(row[2])
  end
end
return table.concat(out, '\\n')
"""


@dataclass(frozen=True)
class ArrivalEntries:
    """Arrival entries read after a known one (`Store.arrivals_after`)."""

    known: bool  # the entry read after is still in the stream (False: replaced or trimmed)
    known_time: float | None  # that entry's time (a replaced history may reuse its id)
    first_id: tuple[int, int] | None  # the stream's first entry (ms, seq): older ones are gone
    ids: list[tuple[int, int]]  # (ms, seq) of each entry read, in stream order
    times: list[float]


def _entry_id(raw: str) -> tuple[int, int]:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


# One page of an invocations stream as compact JSON rows [id, latency_ms, sla_met, cold,
# request_id], built inside Redis: redis-py's parsing of XRANGE replies (nested arrays, a dict
# per entry) takes ~10x longer than json.loads of the same page (100k entries: ~8 s vs ~1 s).
# ARGV: first bound, second bound, count, "1" for newest first (XREVRANGE takes end, start).
_READ_INVOCATIONS = """
local cmd = ARGV[4] == '1' and 'XREVRANGE' or 'XRANGE'
local rows = redis.call(cmd, KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
if #rows == 0 then return '[]' end
local out = {}
for i, row in ipairs(rows) do
  local f, rec = row[2], {row[1], '0', '0', '0', ''}
  for j = 1, #f, 2 do
    local k = f[j]
    if k == 'latency_ms' then rec[2] = f[j + 1]
    elseif k == 'sla_met' then rec[3] = f[j + 1]
    elseif k == 'cold' then rec[4] = f[j + 1]
    elseif k == 'request_id' then rec[5] = f[j + 1] end
  end
  out[i] = rec
end
return cjson.encode(out)
"""


def _invocation(row: list[str]) -> InvocationRecord:
    entry_id, latency_ms, sla_met, cold, request_id = row
    return InvocationRecord(
        at=int(entry_id.split("-", 1)[0]) / 1000.0,
        latency_ms=float(latency_ms),
        sla_met=sla_met == "1",
        cold=cold == "1",
        request_id=request_id,
    )


class Store:
    """Typed access to everything smiless keeps in Redis."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.redis: aioredis.Redis = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=5
        )
        self._read_invocations = self.redis.register_script(_READ_INVOCATIONS)
        self._read_arrivals_after = self.redis.register_script(_READ_ARRIVALS_AFTER)
        self._append_arrivals = self.redis.register_script(_APPEND_ARRIVALS)
        self._append_invocations = self.redis.register_script(_APPEND_INVOCATIONS)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()

    # apps ---------------------------------------------------------------------------------
    async def put_app(self, app: gateway_pb2.App) -> None:
        await self.redis.hset(APPS, app.spec.name, app.SerializeToString())

    async def create_app(self, app: gateway_pb2.App) -> bool:
        """Store only if absent; False when an app of that name exists."""
        return bool(await self.redis.hsetnx(APPS, app.spec.name, app.SerializeToString()))

    async def get_app(self, name: str) -> gateway_pb2.App | None:
        raw = await self.redis.hget(APPS, name)
        return gateway_pb2.App.FromString(raw) if raw is not None else None

    async def list_apps(self) -> list[gateway_pb2.App]:
        raw = await self.redis.hgetall(APPS)
        return sorted((gateway_pb2.App.FromString(v) for v in raw.values()), key=lambda a: a.spec.name)

    async def delete_app(self, name: str) -> bool:
        pipe = self.redis.pipeline()
        pipe.hdel(APPS, name)
        pipe.hdel(PLANS, name)
        pipe.hdel(PREDICTORS, name)
        removed, *_ = await pipe.execute()
        return bool(removed)

    # profiles -----------------------------------------------------------------------------
    async def put_profile(self, profile: profiler_pb2.Profile, kind: str) -> None:
        raw = profile.SerializeToString()
        pipe = self.redis.pipeline()
        pipe.hset(profiles_key(profile.model), kind, raw)
        pipe.rpush(profile_versions_key(profile.model, kind), raw)
        await pipe.execute()

    async def get_profiles(self, model: str) -> dict[str, profiler_pb2.Profile]:
        raw = await self.redis.hgetall(profiles_key(model))
        return {k.decode(): profiler_pb2.Profile.FromString(v) for k, v in raw.items()}

    async def profile_versions(self, model: str, kind: str) -> list[profiler_pb2.Profile]:
        raw = await self.redis.lrange(profile_versions_key(model, kind), 0, -1)
        return [profiler_pb2.Profile.FromString(v) for v in raw]

    async def profile_run(self, model: str) -> dict[str, str]:
        raw = await self.redis.hgetall(profile_run_key(model))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def save_profile_step(self, model: str, step: str, result: str) -> None:
        await self.redis.hset(profile_run_key(model), step, result)

    async def reset_profile_run(self, model: str, params: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(profile_run_key(model))
        pipe.hset(profile_run_key(model), "__params__", params)
        await pipe.execute()

    async def clear_profile_run(self, model: str) -> None:
        await self.redis.delete(profile_run_key(model))

    async def lock_profile(self, model: str, owner: str, ttl_s: float) -> bool:
        """Take (or refresh, for the same owner) the model's profile lock."""
        key = profile_lock_key(model)
        if await self.redis.set(key, owner, nx=True, px=int(ttl_s * 1000)):
            return True
        current = await self.redis.get(key)
        if current is not None and current.decode() == owner:
            await self.redis.pexpire(key, int(ttl_s * 1000))
            return True
        return False

    async def unlock_profile(self, model: str, owner: str) -> None:
        current = await self.redis.get(profile_lock_key(model))
        if current is not None and current.decode() == owner:
            await self.redis.delete(profile_lock_key(model))

    # arrivals -----------------------------------------------------------------------------
    async def record_arrivals(self, app: str, times: list[float], retention_s: float) -> None:
        """Append arrivals (epoch seconds) in one round trip; trim what is older than retention."""
        if not times:
            return
        args: list[str | int] = [int((times[-1] - retention_s) * 1000)]
        for t in times:
            args += (int(t * 1000), f"{t:.6f}")
        await self._append_arrivals(keys=[arrivals_key(app)], args=args)

    async def replace_arrivals(self, app: str, times: list[float], retention_s: float) -> None:
        await self.redis.delete(arrivals_key(app))
        for i in range(0, len(times), 10_000):
            await self.record_arrivals(app, times[i : i + 10_000], retention_s)

    async def last_arrival(self, app: str) -> float | None:
        rows = await self.redis.xrevrange(arrivals_key(app), "+", "-", count=1)
        return float(rows[0][1][b"t"]) if rows else None

    async def arrivals(
        self, app: str, start: float | None = None, end: float | None = None, count: int | None = None
    ) -> list[float]:
        """Arrival times in [start, end], the first `count` of them when given."""
        lo = str(int(start * 1000)) if start is not None else "-"
        hi = str(int(end * 1000)) if end is not None else "+"
        rows = await self.redis.xrange(arrivals_key(app), lo, hi, count=count)
        return [float(fields[b"t"]) for _, fields in rows]

    async def arrivals_after(self, app: str, after: tuple[int, int] | None, count: int) -> ArrivalEntries:
        """Up to `count` arrivals recorded after entry `after` ((ms, seq); None: from the
        first), with what a reader that mirrors the stream needs to stay exact: whether
        `after` is still there (and its time) and which entry is now the first."""
        raw = await self._read_arrivals_after(
            keys=[arrivals_key(app)], args=["" if after is None else f"{after[0]}-{after[1]}", count]
        )
        known, check, first, *rows = (raw.decode() if isinstance(raw, bytes) else str(raw)).split("\n")
        ids: list[tuple[int, int]] = []
        times: list[float] = []
        for row in rows:
            entry, _, t = row.partition(" ")
            ids.append(_entry_id(entry))
            times.append(float(t))
        return ArrivalEntries(
            known == "1", float(check) if check else None, _entry_id(first) if first else None, ids, times
        )

    # predictors ---------------------------------------------------------------------------
    async def put_predictor(self, app: str, model: bytes) -> None:
        await self.redis.hset(PREDICTORS, app, model)

    async def get_predictor(self, app: str) -> bytes | None:
        raw = await self.redis.hget(PREDICTORS, app)
        return bytes(raw) if raw is not None else None

    # plans --------------------------------------------------------------------------------
    async def put_plan(self, plan: optimizer_pb2.AppPlan) -> None:
        await self.redis.hset(PLANS, plan.app, plan.SerializeToString())

    async def get_plan(self, app: str) -> optimizer_pb2.AppPlan | None:
        raw = await self.redis.hget(PLANS, app)
        return optimizer_pb2.AppPlan.FromString(raw) if raw is not None else None

    # instances ----------------------------------------------------------------------------
    async def put_instance(self, inst: common_pb2.Instance) -> None:
        """Write the registry entry and its lifetime record, then notify subscribers."""
        raw = inst.SerializeToString()
        pipe = self.redis.pipeline()
        if inst.state in (common_pb2.INSTANCE_STATE_STOPPED, common_pb2.INSTANCE_STATE_FAILED):
            pipe.hdel(INSTANCES, inst.id)
        else:
            pipe.hset(INSTANCES, inst.id, raw)
        pipe.hset(LIFETIMES, inst.id, raw)
        pipe.publish(INSTANCE_EVENTS, inst.id)
        await pipe.execute()

    async def list_instances(self) -> list[common_pb2.Instance]:
        raw = await self.redis.hgetall(INSTANCES)
        return [common_pb2.Instance.FromString(v) for v in raw.values()]

    async def lifetimes(self) -> list[common_pb2.Instance]:
        raw = await self.redis.hgetall(LIFETIMES)
        return [common_pb2.Instance.FromString(v) for v in raw.values()]

    async def get_instance(self, instance_id: str) -> common_pb2.Instance | None:
        """The live registry entry, None once the instance stopped or failed."""
        raw = await self.redis.hget(INSTANCES, instance_id)
        return common_pb2.Instance.FromString(raw) if raw is not None else None

    async def instance_events(self) -> AsyncIterator[str]:
        """Yield "*" once subscribed (anything may have changed before: reload the registry),
        then instance ids as their registry entries change, until cancelled; raises StoreError
        when the connection is lost. Polls with a timeout: a blocking read would trip the
        socket timeout whenever the channel is quiet."""
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(INSTANCE_EVENTS)
            yield "*"
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None and msg.get("type") == "message":
                    yield msg["data"].decode()
        finally:
            await pubsub.aclose()

    # invocations --------------------------------------------------------------------------
    async def record_invocations(self, app: str, records: list[InvocationRecord], keep: int) -> None:
        if not records:
            return
        # Entry ids are receipt times; the script keeps them growing (see _APPEND_INVOCATIONS).
        args: list[str | int] = [keep]
        for r in sorted(records, key=lambda r: r.at):
            args += (int(r.at * 1000), f"{r.latency_ms:.3f}", int(r.sla_met), int(r.cold), r.request_id)
        await self._append_invocations(keys=[invocations_key(app)], args=args)

    async def record_stage_latencies(self, samples: list[StageLatency], keep: int) -> None:
        if not samples:
            return
        pipe = self.redis.pipeline(transaction=False)
        for s in samples:
            pipe.xadd(
                stage_latencies_key(s.model, s.config),
                {"batch": s.batch, "seconds": f"{s.seconds:.6f}"},
                maxlen=keep,
                approximate=True,
            )
        await pipe.execute()

    async def stage_latencies(self, model: str, config: str, count: int) -> list[StageLatency]:
        """The most recent `count` samples, oldest first."""
        rows = await self.redis.xrevrange(stage_latencies_key(model, config), "+", "-", count=count)
        return [
            StageLatency(model, config, int(f[b"batch"]), float(f[b"seconds"])) for _, f in reversed(rows)
        ]

    async def invocations(
        self, app: str, start: float | None = None, end: float | None = None, page: int = 5_000
    ) -> list[InvocationRecord]:
        """Records in [start, end], oldest first. Read `page` entries per round trip: one
        XRANGE of 100k entries outlasts the socket timeout and blocks the caller's loop."""
        lo = str(int(start * 1000)) if start is not None else "-"
        hi = str(int(end * 1000)) if end is not None else "+"
        out: list[InvocationRecord] = []
        while True:
            rows = await self._page(app, lo, hi, page, newest_first=False)
            out += map(_invocation, rows)
            if len(rows) < page:
                return out
            lo = "(" + rows[-1][0]  # after the last entry read (exclusive, Redis >= 6.2)

    async def _page(
        self, app: str, first: str, second: str, count: int, newest_first: bool
    ) -> list[list[str]]:
        raw = await self._read_invocations(
            keys=[invocations_key(app)], args=[first, second, count, "1" if newest_first else "0"]
        )
        rows: list[list[str]] = json.loads(raw)
        return rows

    async def recent_invocations(
        self, app: str, since: float, limit: int, page: int = 5_000
    ) -> list[InvocationRecord]:
        """The newest records at or after `since`, at most `limit` of them, oldest first
        (a bounded read for status figures, newest first in pages)."""
        hi, lo = "+", str(int(since * 1000))
        newest_first: list[InvocationRecord] = []
        while len(newest_first) < limit:
            want = min(page, limit - len(newest_first))
            rows = await self._page(app, hi, lo, want, newest_first=True)
            newest_first += map(_invocation, rows)
            if len(rows) < want:
                break
            hi = "(" + rows[-1][0]
        newest_first.reverse()
        return newest_first
