"""The discrete-event simulator: requests through a DAG of functions served by instances that a
policy starts and stops; cost and SLA as the real system counts them.

Semantics (the gateway's and the optimizer's, docs/design.md §3-§5):

- An arrival of `count` invocations enters the app's entry function(s) at once. A stage of a
  request becomes ready when all its parents have finished it (fan-in); parallel branches run
  in parallel.
- Each function has one FIFO queue. An instance that is ready and idle takes up to its batch
  size of queued requests and serves them as one batch in `T(B, r)` times a noise factor, plus
  the profile's `cs_extra` on its first batch. Among idle instances the most recently idle
  serves first (so the others can expire).
- When more requests are queued than the busy and starting instances take in their next
  round (one batch each), the gateway starts more on demand, on the policy's `shape` (its
  `EnsureInstance`; the count is `smiless.policy.ondemand`'s, as the optimizer's). A request served by
  an instance that was not ready when the request reached the stage counts as a cold start.
- The policy's `decide` runs after every event of its app and at the `wake_at` it asked for;
  its starts take an init time drawn from the profile; its stops apply at once to idle or
  starting instances and after the current batch to busy ones.
- Cost is `smiless.accounting`'s: every instance's lifetime from start command to stop (or to
  the end of the run) times its config's price, over the window [0, end], end = the
  workload's last minute plus 4 x SLA (the reference's request timeout), the same for every
  policy. A request violates the SLA when its end-to-end latency exceeds it.

Deterministic for a seed: one `random.Random` draws in event order, and events at equal times
run in the order they were scheduled.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from smiless.accounting import Lifetime, percentile, total_cost
from smiless.catalogue import HardwareConfig
from smiless.policy.controller import InstanceView
from smiless.policy.ondemand import on_demand_count
from smiless.policy.profile import FunctionProfile
from smiless.sim.model import Noise, SimApp, profile_on
from smiless.sim.policy import Policy
from smiless.sim.workload import Workload

_ARRIVAL, _READY, _DONE, _WAKE = 0, 1, 2, 3
_MIN_STEP = 1e-6
"""A policy that asks to be woken at `now` (or earlier) is woken this much later instead."""


class _Instance:
    __slots__ = (
        "alive",
        "app",
        "batch",
        "busy_s",
        "config",
        "fidx",
        "id",
        "idle_since",
        "price_h",
        "prof",
        "ready",
        "ready_at",
        "served",
        "started",
        "stop_pending",
        "view",
        "why",
    )

    def __init__(
        self,
        iid: str,
        app: int,
        fidx: int,
        config: HardwareConfig,
        prof: FunctionProfile,
        batch: int,
        now: float,
        why: str,
    ) -> None:
        self.id = iid
        self.app = app
        self.fidx = fidx
        self.config = config
        self.price_h = config.price_per_hour
        self.prof = prof
        self.batch = max(1, batch)
        self.started = now
        self.ready_at = math.inf
        self.ready = False
        self.idle_since: float | None = None
        self.served = 0
        self.alive = True
        self.stop_pending = ""
        """Why it is to stop after its current batch ("" while it is not)."""
        self.view: InstanceView | None = None
        self.why = why
        """Why it was started (the policy's reason, or "on demand": the gateway's EnsureInstance)."""
        self.busy_s = 0.0


class _Request:
    __slots__ = ("arrival", "cold", "left", "pend")

    def __init__(self, arrival: float, pend: list[int], leaves: int) -> None:
        self.arrival = arrival
        self.pend = pend
        self.left = leaves
        self.cold = False


@dataclass
class Breakdown:
    """Where one app's cost and violations come from, to find what a policy wastes.

    Instance time is split into init (start command to ready), busy (serving) and idle (the
    rest), priced at the instance's config; idle cost is keyed by why the instance was
    stopped ("end of run" when it outlived the run). Cold stage invocations are keyed by why
    the instance that served them was started ("on demand" = the gateway's EnsureInstance
    found no instance; a policy reason = the policy started it, too late). A violation is
    "cold" when any stage of the request waited for an init, else "warm" (queueing, noise or
    a plan slower than the SLA). Not clipped to the cost window, so the parts add up to a
    little more than `AppResult.cost` when instances outlive the run."""

    init_cost: float = 0.0
    busy_cost: float = 0.0
    idle_cost: dict[str, float] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    stops: dict[str, int] = field(default_factory=dict)
    cold_starts: dict[str, int] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    cost_by_function: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        idle = sum(self.idle_cost.values())
        return {
            "init_cost": self.init_cost,
            "busy_cost": self.busy_cost,
            "idle_cost": idle,
            "idle_cost_by_stop": dict(sorted(self.idle_cost.items(), key=lambda kv: -kv[1])),
            "cost_by_function": self.cost_by_function,
            "starts": self.starts,
            "stops": self.stops,
            "cold_starts_by_start": self.cold_starts,
            "violations": self.violations,
        }


@dataclass
class AppResult:
    """One app's outcome over the run."""

    app: str
    sla_s: float
    policy: str
    invocations: int = 0
    latencies: list[float] = field(default_factory=list)
    """End-to-end latency (s) of every finished request, in arrival order per completion."""
    arrivals: list[float] = field(default_factory=list)
    """Arrival time of each request in `latencies` (same order): for measuring a window."""
    met_arrivals: list[float] = field(default_factory=list)
    """Arrival times of the requests that met the SLA (what the lower bound may count)."""
    cold_starts: int = 0
    """Stage invocations that waited for an instance to initialise."""
    lifetimes: list[Lifetime] = field(default_factory=list)
    end_s: float = 0.0
    breakdown: Breakdown = field(default_factory=Breakdown)

    @property
    def cost(self) -> float:
        return total_cost(self.lifetimes, 0.0, self.end_s, self.end_s)

    @property
    def violations(self) -> int:
        return sum(1 for x in self.latencies if x > self.sla_s)

    @property
    def violation_ratio(self) -> float:
        return self.violations / len(self.latencies) if self.latencies else 0.0

    def latency_percentile(self, q: float) -> float:
        return percentile(self.latencies, q)


@dataclass
class SimResult:
    apps: list[AppResult]
    events: int
    decisions: int
    wall_s: float
    end_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else math.inf


class _App:
    """Per-app simulation state."""

    def __init__(self, idx: int, app: SimApp, wl: Workload, policy: Policy, result: AppResult) -> None:
        self.idx = idx
        self.app = app
        self.wl = wl
        self.policy = policy
        self.result = result
        self.names = list(app.dag.functions)
        index = {f: i for i, f in enumerate(self.names)}
        self.index = index
        self.children = [[index[c] for c in app.dag.children[f]] for f in self.names]
        self.indegree = [len(app.dag.parents[f]) for f in self.names]
        self.roots = [i for i, d in enumerate(self.indegree) if d == 0]
        self.n_leaves = sum(1 for c in self.children if not c)
        self.queues: list[deque[tuple[_Request, float]]] = [deque() for _ in self.names]
        self.insts: list[list[_Instance]] = [[] for _ in self.names]
        self.live: dict[str, _Instance] = {}
        self.groups = wl.arrival_groups()
        self.next_group = 0
        self.wake_time = math.inf
        self.counter = 0


def simulate(
    entries: Sequence[tuple[SimApp, Workload, Policy]],
    catalogue: dict[str, HardwareConfig] | None = None,
    *,
    noise: Noise | None = None,
    seed: int = 0,
    warmup_s: float = 0.0,
) -> SimResult:
    """Run every (app, workload, policy) in one event loop until every request has finished
    and the cost window has closed. Apps share nothing but the clock.

    `warmup_s`: the policies start that long before the first simulated slot (their first
    decision is at -warmup_s), so what they want running at the start can be running, as
    after the reference load generator's 15 s warm-up sleep. The cost window still starts
    at 0: what runs before it is not charged."""
    if not (math.isfinite(warmup_s) and warmup_s >= 0.0):
        raise ValueError(f"warmup_s must be >= 0, got {warmup_s!r}")
    return _Sim(entries, catalogue, noise or Noise(), seed, warmup_s).run()


class _Sim:
    def __init__(
        self,
        entries: Sequence[tuple[SimApp, Workload, Policy]],
        catalogue: dict[str, HardwareConfig] | None,
        noise: Noise,
        seed: int,
        warmup_s: float = 0.0,
    ) -> None:
        self.warmup_s = warmup_s
        if catalogue is None:
            from smiless.catalogue import load_catalogue

            catalogue = load_catalogue()
        self.catalogue = catalogue
        self.noise = noise
        self.rng = random.Random(seed)
        self.heap: list[tuple[float, int, int, Any, Any]] = []
        self.seq = 0
        self.apps: list[_App] = []
        for i, (app, wl, pol) in enumerate(entries):
            res = AppResult(app.name, app.sla_s, pol.name)
            self.apps.append(_App(i, app, wl, pol, res))
        self.end = max((a.wl.duration_s + 4.0 * a.app.sla_s for a in self.apps), default=0.0)
        self.pending = 0
        self.events = 0
        self.decisions = 0

    def push(self, t: float, kind: int, a: Any, b: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> SimResult:
        t0 = time.perf_counter()
        for st in self.apps:
            self.decide(st, -self.warmup_s)
            if st.groups:
                self.push(st.groups[0][0], _ARRIVAL, st)
        heap = self.heap
        pop = heapq.heappop
        while heap:
            now, _, kind, a, b = heap[0]
            if now > self.end and self.pending == 0:
                break
            pop(heap)
            if kind == _DONE:
                self.done(a, b, now)
            elif kind == _READY:
                self.ready(a, now)
            elif kind == _ARRIVAL:
                self.arrival(a, now)
            else:
                if now != a.wake_time:
                    continue  # superseded by a later decision
                a.wake_time = math.inf
                self.events += 1
                self.decide(a, now)
        end = self.end
        for st in self.apps:
            for inst in list(st.live.values()):
                self.record(st, inst, None, "end of run")
            st.result.end_s = end
        wall = time.perf_counter() - t0
        return SimResult([st.result for st in self.apps], self.events, self.decisions, wall, end)

    # --- events ---------------------------------------------------------------------------------

    def arrival(self, st: _App, now: float) -> None:
        self.events += 1
        _, minute, count = st.groups[st.next_group]
        st.next_group += 1
        if st.next_group < len(st.groups):
            self.push(st.groups[st.next_group][0], _ARRIVAL, st)
        st.policy.on_arrival(now, minute, count)
        st.result.invocations += count
        self.pending += count
        indeg = st.indegree
        for _ in range(count):
            req = _Request(now, indeg.copy(), st.n_leaves)
            for r in st.roots:
                st.queues[r].append((req, now))
        for r in st.roots:
            self.dispatch(st, r, now)
        self.decide(st, now)

    def ready(self, inst: _Instance, now: float) -> None:
        if not inst.alive:
            return
        self.events += 1
        st = self.apps[inst.app]
        inst.ready = True
        inst.idle_since = now
        inst.view = None
        if inst.stop_pending:
            self.stop(st, inst, now, inst.stop_pending)
        else:
            self.dispatch(st, inst.fidx, now)
        self.decide(st, now)

    def done(self, inst: _Instance, batch: list[_Request], now: float) -> None:
        self.events += 1
        st = self.apps[inst.app]
        f = inst.fidx
        kids = st.children[f]
        touched: list[int] = []
        for req in batch:
            if kids:
                pend = req.pend
                for c in kids:
                    pend[c] -= 1
                    if pend[c] == 0:
                        st.queues[c].append((req, now))
                        if c not in touched:
                            touched.append(c)
            else:
                req.left -= 1
                if req.left == 0:
                    self.pending -= 1
                    lat = now - req.arrival
                    st.result.latencies.append(lat)
                    st.result.arrivals.append(req.arrival)
                    if lat <= st.app.sla_s:
                        st.result.met_arrivals.append(req.arrival)
                    else:
                        _bump(st.result.breakdown.violations, "cold" if req.cold else "warm")
                    st.policy.on_completion(now, lat)
        inst.served += len(batch)
        inst.idle_since = now
        inst.view = None
        st.policy.on_served(now, st.names[f], len(batch))
        if inst.stop_pending:
            self.stop(st, inst, now, inst.stop_pending)
        self.dispatch(st, f, now)
        for c in touched:
            self.dispatch(st, c, now)
        self.decide(st, now)

    # --- serving --------------------------------------------------------------------------------

    def dispatch(self, st: _App, f: int, now: float) -> None:
        q = st.queues[f]
        if not q:
            return
        insts = st.insts[f]
        idle = [i for i in insts if i.ready and i.idle_since is not None and not i.stop_pending]
        if idle:
            idle.sort(key=_idle_key)
            while q and idle:
                self.serve(st, idle.pop(), now)
        if q:
            self.ensure(st, f, now)

    def ensure(self, st: _App, f: int, now: float) -> None:
        """The gateway's EnsureInstance: start enough instances for what is left queued."""
        q = st.queues[f]
        # busy and starting instances each take a batch in their next round
        coming = sum(i.batch for i in st.insts[f] if not i.stop_pending and i.idle_since is None)
        config, batch = st.policy.shape(st.names[f])
        for _ in range(on_demand_count(len(q), coming, batch)):
            self.start(st, f, config, batch, now, "on demand")

    def serve(self, st: _App, inst: _Instance, now: float) -> None:
        q = st.queues[inst.fidx]
        n = min(len(q), inst.batch)
        batch: list[_Request] = []
        ready_at = inst.ready_at - _MIN_STEP  # float sums that should be equal may differ in the last bit
        for _ in range(n):
            req, since = q.popleft()
            if since < ready_at:
                st.result.cold_starts += 1
                _bump(st.result.breakdown.cold_starts, inst.why)
                req.cold = True
            batch.append(req)
        prof = inst.prof
        t = prof.inference.latency(n, inst.config.resource) * self.noise.draw_factor(self.rng)
        if inst.served == 0:
            t += prof.cs_extra
        inst.busy_s += t
        inst.idle_since = None
        inst.view = None
        self.push(now + t, _DONE, inst, batch)

    # --- instances ------------------------------------------------------------------------------

    def start(self, st: _App, f: int, config_name: str, batch: int, now: float, why: str) -> None:
        cfg = self.catalogue.get(config_name)
        if cfg is None:
            raise ValueError(f"policy {st.policy.name}: unknown config {config_name!r}")
        prof = profile_on(st.app, st.names[f], cfg)
        if prof is None:
            raise ValueError(f"policy {st.policy.name}: {st.names[f]} has no profile for {config_name}")
        st.counter += 1
        inst = _Instance(f"{st.app.name}/{st.names[f]}/{st.counter}", st.idx, f, cfg, prof, batch, now, why)
        _bump(st.result.breakdown.starts, why)
        inst.ready_at = now + self.noise.draw_init(prof.init, self.rng)
        st.insts[f].append(inst)
        st.live[inst.id] = inst
        self.push(inst.ready_at, _READY, inst)

    def stop(self, st: _App, inst: _Instance, now: float, why: str) -> None:
        if not inst.alive:
            return
        if inst.ready and inst.idle_since is None:  # busy: after this batch
            inst.stop_pending = why
            return
        self.record(st, inst, now, why)
        if st.queues[inst.fidx]:
            self.ensure(st, inst.fidx, now)  # it was starting for queued requests

    def record(self, st: _App, inst: _Instance, now: float | None, why: str) -> None:
        inst.alive = False
        b = st.result.breakdown
        _bump(b.stops, why)
        until = self.end if now is None else now
        price = inst.price_h / 3600.0
        init = max(0.0, min(inst.ready_at, until) - inst.started)
        life = max(0.0, until - inst.started)
        b.init_cost += price * init
        b.busy_cost += price * inst.busy_s
        idle = price * max(0.0, life - init - inst.busy_s)
        b.idle_cost[why] = b.idle_cost.get(why, 0.0) + idle
        fname = st.names[inst.fidx]
        b.cost_by_function[fname] = b.cost_by_function.get(fname, 0.0) + price * life
        st.insts[inst.fidx].remove(inst)
        del st.live[inst.id]
        st.result.lifetimes.append(
            Lifetime(
                inst.id, st.app.name, st.names[inst.fidx], inst.config.name, inst.price_h, inst.started, now
            )
        )

    # --- the policy -----------------------------------------------------------------------------

    def decide(self, st: _App, now: float) -> None:
        self.decisions += 1
        views: list[InstanceView] = []
        for inst in st.live.values():
            if inst.stop_pending:
                continue
            v = inst.view
            if v is None:
                v = inst.view = InstanceView(
                    inst.id,
                    st.names[inst.fidx],
                    inst.config.name,
                    inst.ready,
                    inst.started,
                    inst.idle_since if inst.ready else None,
                    inst.served,
                    inst.batch,
                    inst.price_h / 3600.0,
                )
            views.append(v)
        d = st.policy.decide(now, views)
        for s in d.starts:
            f = st.index[s.function]
            batch = s.batch if s.batch is not None else st.policy.shape(s.function)[1]
            self.start(st, f, s.config, batch, now, s.reason)
        for x in d.stops:
            target = st.live.get(x.instance_id)
            if target is not None:
                self.stop(st, target, now, x.reason)
        wake = d.wake_at
        if wake < math.inf:
            if wake <= now:
                wake = now + _MIN_STEP
            if wake != st.wake_time:
                st.wake_time = wake
                self.push(wake, _WAKE, st)
        else:
            st.wake_time = math.inf


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _idle_key(inst: _Instance) -> float:
    return inst.idle_since if inst.idle_since is not None else -math.inf
