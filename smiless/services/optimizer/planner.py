"""The optimizer's planner: an app's profiles from Redis (widened by this host's observed
inits), the predictor's forecast and the SLA into a `Plan`, stored and kept as the latest."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import grpc

from smiless import appspec, logs, profiles
from smiless.catalogue import HardwareConfig
from smiless.config import Settings
from smiless.policy.profile import FunctionProfile, ObservedInits
from smiless.policy.search import Plan, sla_aware_plan
from smiless.server import RpcError
from smiless.services.common import require_app
from smiless.services.optimizer.forecasts import PredictorClient, forecast_of
from smiless.services.optimizer.planning import plan_to_proto
from smiless.store import Store
from smiless.v1 import optimizer_pb2, predictor_pb2

log = logging.getLogger("smiless.optimizer")


class AppPlanner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalogue: Mapping[str, HardwareConfig],
        predictor: PredictorClient,
        observed_inits: ObservedInits,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runnable = {n: c for n, c in catalogue.items() if c.runnable}
        """Plans must be executable here: configs this host cannot run are not candidates."""
        self.predictor = predictor
        self.observed_inits = observed_inits
        self.plans: dict[str, Plan] = {}
        """Per app, its latest plan: the one the controller enforces."""

    def latest(self, app: str) -> Plan | None:
        return self.plans.get(app)

    def planned_apps(self) -> set[str]:
        return set(self.plans)

    def forget(self, app: str) -> None:
        self.plans.pop(app, None)

    async def plan(
        self, app: str, pred: predictor_pb2.PredictResponse | None = None
    ) -> tuple[optimizer_pb2.AppPlan, Plan]:
        """Plan `app` for `pred` (asked of the predictor when not given) and store the plan."""
        stored = await require_app(self.store, app)
        spec = appspec.validate(appspec.from_proto(stored.spec))
        found = await self._profiles(spec)
        forecast, since = forecast_of(pred if pred is not None else await self.predictor.predict(app))
        plan = sla_aware_plan(
            spec.function_names,
            spec.edges,
            spec.sla_s,
            found,
            self.runnable,
            forecast,
            since,
            top_k=self.settings.plan_top_k,
            headroom=self.settings.plan_headroom,
        )
        msg = plan_to_proto(app, plan, time.time())
        await self.store.put_plan(msg)
        self.plans[app] = plan
        logs.event(
            log,
            "planned",
            app=app,
            feasible=plan.feasible,
            cost=plan.cost,
            latency_s=round(plan.latency_s, 4),
            configs=plan.configs,
        )
        return msg, plan

    async def _profiles(self, spec: appspec.AppSpec) -> dict[str, dict[str, FunctionProfile]]:
        """Every function's stored profiles; FAILED_PRECONDITION naming the unprofiled ones."""
        out: dict[str, dict[str, FunctionProfile]] = {}
        missing: list[str] = []
        for f in spec.functions:
            stored = await self.store.get_profiles(f.model)
            if not stored:
                missing.append(f"{f.name} ({f.model})")
                continue
            out[f.name] = {
                kind: self.observed_inits.widen(profiles.from_proto(p)) for kind, p in stored.items()
            }
        if missing:
            raise RpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"profiles: no profile for {', '.join(missing)}; run `smiless profile MODEL` first",
            )
        return out
