"""The controller loop: keeps every app's instances in line with its plan.

Each tick it looks for new arrivals of every app (one Redis read), asks the predictor for a
fresh forecast when there are, re-plans when the forecast moved (another IT, count or last
arrival) or the plan is older than `replan_interval_s` (profiles may have been refitted),
reads each ready instance's usage from its worker (`Describe`), and carries out what the pure
`smiless.policy.controller.decide` says: starts (pre-warm, keep warm, scale out) and stops
(served, keep-alive expired, no arrival, scale down). Apps that cannot be planned (no profile
yet) fall back to a fixed keep-alive of `fallback_keep_alive_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

import grpc

from smiless import logs
from smiless.policy.controller import InstanceView, decide
from smiless.policy.search import Plan
from smiless.server import RpcError, grpc_options
from smiless.services.common import seconds
from smiless.v1 import common_pb2, predictor_pb2, worker_pb2, worker_pb2_grpc

if TYPE_CHECKING:
    from smiless.services.optimizer.service import OptimizerService

log = logging.getLogger("smiless.optimizer.controller")
DESCRIBE_TIMEOUT_S = 1.0


def forecast_key(pred: predictor_pb2.PredictResponse) -> tuple[object, ...]:
    """What a plan depends on in a prediction: a change means re-plan."""
    return (
        pred.last_arrival.ToNanoseconds() if pred.HasField("last_arrival") else None,
        pred.next_it.ToNanoseconds(),
        pred.count,
        pred.keep_alive.ToNanoseconds(),
        pred.burst.ToNanoseconds() if pred.HasField("burst") else None,
        pred.next_it_median.ToNanoseconds() if pred.HasField("next_it_median") else None,
    )


class Controller:
    def __init__(self, svc: OptimizerService) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.keys: dict[str, tuple[object, ...]] = {}
        self.planned_at: dict[str, float] = {}
        self.last_seen: dict[str, float | None] = {}
        self.previous: dict[str, Plan] = {}
        """Per app, the plan made before its latest arrival (a slot or more earlier): it sized
        the requests in flight (`decide`'s `previous`)."""
        self.reported: dict[str, str] = {}
        self.stubs: dict[str, worker_pb2_grpc.WorkerStub] = {}
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.kick = asyncio.Event()

    async def run(self) -> None:
        """Tick until cancelled; a tick that fails is logged, never fatal."""
        tick = self.settings.controller_tick_s
        while True:
            try:
                wake = await self.tick()
            except Exception as exc:  # Redis down, predictor down...: try again next tick
                logs.event(log, "controller tick failed", logging.WARNING, error=str(exc))
                wake = math.inf
            delay = min(tick, max(0.0, wake - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick.wait(), delay)
            self.kick.clear()

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()

    async def tick(self) -> float:
        """One pass over every app; returns when the earliest app wants the next one."""
        apps = {a.spec.name for a in await self.svc.store.list_apps()}
        wake = math.inf
        for app in sorted(apps):
            try:
                wake = min(wake, await self.tick_app(app))
            except RpcError as exc:
                if self.reported.get(app) != exc.message:  # say it once, not every tick
                    self.reported[app] = exc.message
                    logs.event(log, "app not controlled", logging.WARNING, app=app, reason=exc.message)
                await self.fallback(app)
        for inst in list(self.svc.instances.values()):  # apps deleted meanwhile
            if inst.app not in apps and inst.state == common_pb2.INSTANCE_STATE_READY:
                self.svc.spawn(self.svc.stop_instance(inst.id, "app deleted"))
        for gone in set(self.svc.plans) - apps:
            self.forget(gone)
        return wake

    def forget(self, app: str) -> None:
        """Drop what was kept for a deleted app (a re-registered one starts afresh)."""
        self.svc.plans.pop(app, None)
        for kept in (self.keys, self.planned_at, self.last_seen, self.previous, self.reported):
            kept.pop(app, None)

    async def tick_app(self, app: str) -> float:
        now = time.time()
        # A forecast moves with new arrivals: ask the predictor only then (one cheap Redis
        # read per tick instead), or when the plan is due anyway.
        last = await self.svc.store.last_arrival(app)
        plan = self.svc.plans.get(app)
        stale = now - self.planned_at.get(app, -math.inf) > self.settings.replan_interval_s
        if plan is None or stale or self.last_seen.get(app) != last:
            pred = await self.svc.predict(app)
            key = forecast_key(pred)
            if plan is None or stale or self.keys.get(app) != key:
                old = plan
                _, plan = await self.svc.plan_app(app, pred)
                if old is not None and plan.now - old.now >= max(plan.forecast.burst_s, 1e-9):
                    self.previous[app] = old
                self.keys[app] = key
                self.planned_at[app] = now
            self.last_seen[app] = last
        self.reported.pop(app, None)
        views = await self.views(app)
        # While the burst the plan was made at may still be coming, how much of it has: the
        # plan counts from its latest arrival, so the burst began at most `burst_s` before
        # (read no further than the predicted count: only whether it has come matters).
        arrived = None
        burst = plan.forecast.burst_s
        if burst > 0.0 and now < plan.now + burst:
            start = plan.now - burst
            arrived = len(await self.svc.store.arrivals(app, start=start, count=plan.forecast.count))
        d = decide(
            plan,
            time.time(),
            [v for v, _ in views],
            active=last is not None,
            miss_grace_s=self.settings.miss_grace_s,
            inflight=in_flight(views),
            previous=self.previous.get(app),
            arrived=arrived,
        )
        for s in d.stops:
            self.svc.spawn(self.svc.stop_instance(s.instance_id, s.reason))
        # Within the host's capacity; the rest wait for a later tick (entry stages first:
        # the plan lists functions in topological order).
        room = self.settings.max_instances - (len(self.svc.instances) - len(d.stops))
        for st in d.starts[: max(0, room)]:
            batch = st.batch if st.batch is not None else plan.functions[st.function].batch
            self.svc.spawn(self.svc.start_planned(app, st.function, st.config, batch, st.reason))
        if len(d.starts) > max(0, room):
            logs.event(
                log, "starts deferred: at max_instances", app=app, deferred=len(d.starts) - max(0, room)
            )
        return d.wake_at

    async def fallback(self, app: str) -> None:
        """No plan: stop instances idle for longer than the fixed keep-alive."""
        now = time.time()
        for view, _ in await self.views(app):
            idle = view.idle_since
            if view.ready and idle is not None and now - idle >= self.settings.fallback_keep_alive_s:
                self.svc.spawn(self.svc.stop_instance(view.id, "keep-alive expired"))

    def stub(self, address: str) -> worker_pb2_grpc.WorkerStub:
        stub = self.stubs.get(address)
        if stub is None:
            ch = grpc.aio.insecure_channel(address, options=grpc_options(self.settings))
            self.channels[address] = ch
            stub = self.stubs[address] = worker_pb2_grpc.WorkerStub(ch)
        return stub

    async def views(self, app: str) -> list[tuple[InstanceView, int]]:
        """The app's live instances with their usage and the requests each holds (queued or
        being served), read from their workers."""
        mine = [i for i in self.svc.instances.values() if i.app == app]
        return list(await asyncio.gather(*(self.view(i) for i in mine)))

    async def view(self, inst: common_pb2.Instance) -> tuple[InstanceView, int]:
        started = seconds(inst.started_at) or 0.0
        cfg = self.svc.catalogue.get(inst.config)
        price = cfg.price_per_second if cfg is not None else None

        def view(ready: bool, idle: float | None, served: int) -> InstanceView:
            return InstanceView(
                inst.id, inst.function, inst.config, ready, started, idle, served, inst.batch or None, price
            )

        if inst.state != common_pb2.INSTANCE_STATE_READY:
            return view(False, None, 0), 0
        try:
            usage = await self.stub(inst.address).Describe(
                worker_pb2.DescribeRequest(), timeout=DESCRIBE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:  # unreachable: the exit watch decides, never stop blind
            return view(True, None, inst.served), 0
        inst.served = usage.served
        idle = seconds(usage.idle_since) if usage.in_flight == 0 else None
        return view(True, idle, usage.served), usage.in_flight


def in_flight(views: list[tuple[InstanceView, int]]) -> dict[str, int]:
    """Per function, the requests its workers hold. The controller's `inflight` also counts
    requests still upstream; the workers cannot see those, so this is a lower bound (the
    simulator, which sees every request, passes the whole count)."""
    out: dict[str, int] = {}
    for v, n in views:
        out[v.function] = out.get(v.function, 0) + n
    return out
