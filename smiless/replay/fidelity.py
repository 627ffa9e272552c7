"""Fidelity: a measured replay against the simulator's run of the same window (the
simulation is pure; the measured profiles come from the profiler)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from smiless import accounting, profiles, sim
from smiless.catalogue import load_catalogue, mark_runnable
from smiless.config import Settings
from smiless.policy.profile import load_reference_profiles
from smiless.policy.workflow import Dag
from smiless.replay.report import GatewayFigures, Replayed, ReplayReport
from smiless.v1 import profiler_pb2, profiler_pb2_grpc

#: Done-when of the replay issue: the measured cost within this of the simulated one ...
COST_TOLERANCE = 0.20


#: ... and the violation ratio within this many points (as a fraction).
VIOLATION_TOLERANCE = 0.03


@dataclass(frozen=True)
class SimFigures:
    """The simulator's figures for one app over a window as long as the measured one."""

    invocations: int
    cost: float
    violation_ratio: float
    p50_ms: float
    p99_ms: float
    instances_started: int

    @property
    def cost_per_1000(self) -> float:
        return self.cost / self.invocations * 1000.0 if self.invocations else 0.0


@dataclass(frozen=True)
class Fidelity:
    """Measured against simulated, for one app."""

    app: str
    measured: GatewayFigures
    simulated: SimFigures

    @property
    def cost_error(self) -> float:
        """(measured - simulated) / simulated; inf when the simulator says 0 and we paid."""
        if self.simulated.cost == 0:
            return 0.0 if self.measured.cost == 0 else math.inf
        return (self.measured.cost - self.simulated.cost) / self.simulated.cost

    @property
    def violation_error(self) -> float:
        """Measured minus simulated violation ratio (a fraction; 0.03 = 3 points)."""
        return self.measured.violation_ratio - self.simulated.violation_ratio

    @property
    def within_target(self) -> bool:
        return abs(self.cost_error) <= COST_TOLERANCE and abs(self.violation_error) <= VIOLATION_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "simulated": asdict(self.simulated) | {"cost_per_1000": self.simulated.cost_per_1000},
            "cost_error": self.cost_error,
            "violation_error": self.violation_error,
            "within_target": self.within_target,
        }


def fidelity(report: ReplayReport, simulated: dict[str, SimFigures]) -> list[Fidelity]:
    """One comparison per app that has both a gateway report and a simulated one."""
    return [
        Fidelity(a.app, a.gateway, simulated[a.app])
        for a in report.apps
        if a.gateway is not None and a.app in simulated
    ]


def measured_profiles(address: str, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The profiler's stored profiles per model, by kind ("cpu"/"gpu"), as the planner takes them."""
    out: dict[str, dict[str, Any]] = {}
    with grpc.insecure_channel(address) as ch:
        stub = profiler_pb2_grpc.ProfilerStub(ch)
        for m in dict.fromkeys(models):
            try:
                got = stub.GetProfile(profiler_pb2.GetProfileRequest(model=m), timeout=10)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                continue
            out[m] = {fp.kind.value: fp for fp in (profiles.from_proto(p) for p in got.profiles)}
    return out


def compare_with_sim(done: Replayed, profiler_address: str, history_minutes: int = 120) -> dict[str, Any]:
    """Simulate the replayed window with the `smiless` policy, the measured profiles (the
    reference's where a model has none) and the host's runnable configs; pair the figures.

    The simulated workload is the same trace window with the `history_minutes` before it as
    history (what `smiless demo` loads into the predictor). The simulated cost is taken over
    [0, the measured window's length] with smiless.accounting, as the gateway takes it."""
    report = done.report
    specs = done.specs
    window_s = report.window_s
    catalogue = {
        n: c
        for n, c in mark_runnable(load_catalogue(Settings().catalogue), os.cpu_count() or 1, False).items()
        if c.runnable
    }
    measured = measured_profiles(profiler_address, [f.model for s in specs.values() for f in s.functions])
    reference = load_reference_profiles()
    notes: list[str] = []
    shared: dict[Any, Any] = {}
    entries = []
    for a in report.apps:
        spec = specs[a.app]
        fprofiles: dict[str, Any] = {}
        for f in spec.functions:
            if f.model in measured:
                fprofiles[f.name] = measured[f.model]
            elif f.model in reference:
                fprofiles[f.name] = reference[f.model]
                notes.append(f"{a.app}/{f.name}: no measured profile of {f.model}; the reference's")
            else:
                return {"built": True, "error": f"{a.app}/{f.name}: no profile of {f.model} to simulate"}
        app_ = sim.SimApp(a.app, spec.sla_s, Dag.of(spec.function_names, spec.edges), fprofiles, a.app)
        live = a.start_minute - done.lead_in_minutes  # the lead-in is traffic in both runs
        first = max(0, live - history_minutes)
        counts = done.rows[a.app].counts[first : a.start_minute + a.minutes]
        wl = sim.Workload(
            counts=counts,
            start_minute=live - first,
            slot_s=report.slot_seconds,
            spread=report.spread,  # type: ignore[arg-type]
            seed=done.seed,
        )
        ctx = sim.PolicyContext(app_, wl, catalogue, shared=shared)
        entries.append((app_, wl, sim.make_policy("smiless", ctx)))
    result = sim.simulate(entries, dict(catalogue), seed=done.seed)
    cut = done.lead_in_minutes * report.slot_seconds

    def figures(r: sim.AppResult) -> SimFigures:
        """The simulated run measured as the real one: requests that arrived after the
        lead-in, cost over [lead-in end, + the measured window's length]."""
        lat = [x for x, t in zip(r.latencies, r.arrivals, strict=True) if t >= cut - 1e-9]
        return SimFigures(
            invocations=len(lat),
            cost=accounting.total_cost(r.lifetimes, cut, cut + window_s, r.end_s),
            violation_ratio=sum(1 for x in lat if x > r.sla_s) / len(lat) if lat else 0.0,
            p50_ms=accounting.percentile(lat, 50) * 1000.0,
            p99_ms=accounting.percentile(lat, 99) * 1000.0,
            instances_started=sum(1 for x in r.lifetimes if cut <= x.start <= cut + window_s),
        )

    simulated = {r.app: figures(r) for r in result.apps}
    pairs = fidelity(report, simulated)
    return {
        "built": True,
        "policy": "smiless",
        "window_s": window_s,
        "sim_wall_s": result.wall_s,
        "apps": [p.to_dict() | {"measured": asdict(p.measured)} for p in pairs],
        "within_target": all(p.within_target for p in pairs),
        "notes": notes,
    }
