"""The controller loop: keeps every app's instances in line with its plan.

Each tick it looks for new arrivals of every app (one Redis read), asks for a fresh forecast
when there are, re-plans when the forecast moved or the plan is older than
`replan_interval_s` (profiles may have been refitted), reads each instance's usage and
carries out what the pure `smiless.policy.controller.decide` says. Apps that cannot be
planned (no profile yet) fall back to a fixed keep-alive of `fallback_keep_alive_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

from smiless import logs
from smiless.config import Settings
from smiless.policy.controller import ControllerContext, InstanceView, decide
from smiless.policy.search import Plan
from smiless.server import RpcError
from smiless.services.optimizer.forecasts import forecast_key
from smiless.services.optimizer.instances import InstanceManager
from smiless.store import Store
from smiless.v1 import common_pb2, optimizer_pb2, predictor_pb2

log = logging.getLogger("smiless.optimizer.controller")


class Planner(Protocol):
    """What the controller needs of the planner: each app's latest plan, and a new one."""

    def latest(self, app: str) -> Plan | None: ...

    def planned_apps(self) -> set[str]: ...

    def forget(self, app: str) -> None: ...

    async def plan(
        self, app: str, pred: predictor_pb2.PredictResponse | None = None
    ) -> tuple[optimizer_pb2.AppPlan, Plan]: ...


class Forecaster(Protocol):
    async def predict(self, app: str) -> predictor_pb2.PredictResponse: ...


@dataclass(slots=True)
class AppState:
    """What the controller keeps of one app between ticks."""

    key: tuple[object, ...] | None = None
    """The forecast its plan was made for (`forecast_key`)."""
    planned_at: float = -math.inf
    last_seen: float | None = None
    """Its latest arrival when the forecast was last asked for."""
    previous: Plan | None = None
    """The plan made before its latest arrival (a slot or more earlier): it sized the
    requests in flight (`ControllerContext.previous`)."""
    reported: str | None = None
    """Why it cannot be controlled, once logged (said once, not every tick)."""


class Controller:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        instances: InstanceManager,
        planner: Planner,
        forecaster: Forecaster,
    ) -> None:
        self.settings = settings
        self.store = store
        self.instances = instances
        self.planner = planner
        self.forecaster = forecaster
        self.apps: dict[str, AppState] = {}
        self.kick = asyncio.Event()
        """Set to run the next tick now (a new plan to enforce)."""

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

    async def tick(self) -> float:
        """One pass over every app; returns when the earliest app wants the next one."""
        apps = {a.spec.name for a in await self.store.list_apps()}
        wake = math.inf
        for app in sorted(apps):
            state = self.apps.setdefault(app, AppState())
            try:
                wake = min(wake, await self.tick_app(app, state))
            except RpcError as exc:
                if state.reported != exc.message:
                    state.reported = exc.message
                    logs.event(log, "app not controlled", logging.WARNING, app=app, reason=exc.message)
                await self.fallback(app)
        for inst in list(self.instances.instances.values()):  # apps deleted meanwhile
            if inst.app not in apps and inst.state == common_pb2.INSTANCE_STATE_READY:
                self.instances.spawn(self.instances.stop(inst.id, "app deleted"))
        for gone in (set(self.apps) | self.planner.planned_apps()) - apps:
            self.forget(gone)
        return wake

    def forget(self, app: str) -> None:
        """Drop what was kept for a deleted app (a re-registered one starts afresh)."""
        self.planner.forget(app)
        self.apps.pop(app, None)

    async def tick_app(self, app: str, state: AppState) -> float:
        now = time.time()
        # A forecast moves with new arrivals: ask the predictor only then (one cheap Redis
        # read per tick instead), or when the plan is due anyway.
        last = await self.store.last_arrival(app)
        plan = self.planner.latest(app)
        stale = now - state.planned_at > self.settings.replan_interval_s
        if plan is None or stale or state.last_seen != last:
            pred = await self.forecaster.predict(app)
            key = forecast_key(pred)
            if plan is None or stale or state.key != key:
                old = plan
                _, plan = await self.planner.plan(app, pred)
                if old is not None and plan.now - old.now >= max(plan.forecast.burst_s, 1e-9):
                    state.previous = old
                state.key = key
                state.planned_at = now
            state.last_seen = last
        state.reported = None
        views = await self.instances.views(app)
        arrived = await self.arrived(app, plan, now)
        d = decide(
            ControllerContext(
                plan,
                time.time(),
                [v for v, _ in views],
                active=last is not None,
                miss_grace_s=self.settings.miss_grace_s,
                inflight=in_flight(views),
                previous=state.previous,
                arrived=arrived,
            )
        )
        for s in d.stops:
            self.instances.spawn(self.instances.stop(s.instance_id, s.reason))
        # Within the capacity; the rest wait for a later tick (entry stages first: the plan
        # lists functions in topological order).
        room = max(0, self.instances.room(stopping=len(d.stops)))
        for st in d.starts[:room]:
            batch = st.batch if st.batch is not None else plan.functions[st.function].batch
            self.instances.spawn(self.instances.start_planned(app, st.function, st.config, batch, st.reason))
        if len(d.starts) > room:
            logs.event(log, "starts deferred: at max_instances", app=app, deferred=len(d.starts) - room)
        return d.wake_at

    async def arrived(self, app: str, plan: Plan, now: float) -> int | None:
        """While the burst the plan was made at may still be coming, how much of it has: the
        plan counts from its latest arrival, so the burst began at most `burst_s` before (read
        no further than the predicted count: only whether it has come matters)."""
        burst = plan.forecast.burst_s
        if burst > 0.0 and now < plan.now + burst:
            start = plan.now - burst
            return len(await self.store.arrivals(app, start=start, count=plan.forecast.count))
        return None

    async def fallback(self, app: str) -> None:
        """No plan: stop instances idle for longer than the fixed keep-alive."""
        now = time.time()
        for view, _ in await self.instances.views(app):
            idle = view.idle_since
            if view.ready and idle is not None and now - idle >= self.settings.fallback_keep_alive_s:
                self.instances.spawn(self.instances.stop(view.id, "keep-alive expired"))


def in_flight(views: list[tuple[InstanceView, int]]) -> dict[str, int]:
    """Per function, the requests its workers hold. The controller's `inflight` also counts
    requests still upstream; the workers cannot see those, so this is a lower bound (the
    simulator, which sees every request, passes the whole count)."""
    out: dict[str, int] = {}
    for v, n in views:
        out[v.function] = out.get(v.function, 0) + n
    return out
