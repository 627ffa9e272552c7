"""The problem every search solves: per function, every candidate config and its Pareto front
(which never loses the optimum), with the DAG in index form for the searches' inner loops."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.autoscaler import ResourceLadder
from smiless.policy.costmodel import Candidate, Forecast, evaluate_batched, pareto_front
from smiless.policy.profile import DEFAULT_K_SIGMA, FunctionProfiles
from smiless.policy.search.types import MissingProfileError, PlanningError
from smiless.policy.workflow import Dag


@dataclass(frozen=True)
class Problem:
    """Everything a search needs, built once per plan: the DAG and, per function, every
    candidate and its Pareto front (cost ascending, latency strictly descending)."""

    dag: Dag
    sla_s: float
    forecast: Forecast
    candidates: dict[str, tuple[Candidate, ...]]
    front: dict[str, tuple[Candidate, ...]]
    missing: dict[str, tuple[str, ...]]
    # index form of the DAG and fronts, for the searches' inner loops
    par: tuple[tuple[int, ...], ...]
    chi: tuple[tuple[int, ...], ...]
    lats: tuple[tuple[float, ...], ...]
    costs: tuple[tuple[float, ...], ...]


def build_problem(
    functions: Iterable[str],
    edges: Iterable[tuple[str, str]],
    sla_s: float,
    profiles: Mapping[str, FunctionProfiles],
    catalogue: Mapping[str, HardwareConfig],
    forecast: Forecast,
    k_sigma: float = DEFAULT_K_SIGMA,
) -> Problem:
    """Validate the inputs and evaluate every (function, config) candidate."""
    if not sla_s > 0.0:
        raise PlanningError(f"sla must be positive, got {sla_s!r}")
    dag = Dag.of(functions, edges)
    configs = list(catalogue.values())
    if not configs:
        raise PlanningError("catalogue is empty")
    ladders = {k: ResourceLadder.of(configs, k) for k in Kind} if forecast.count > 1 else {}
    # config fields resolved once (properties and enum values cost more than the arithmetic)
    fields = [(c.name, c.kind, c.kind.value, c.resource, c.price_per_second) for c in configs]
    candidates: dict[str, tuple[Candidate, ...]] = {}
    front: dict[str, tuple[Candidate, ...]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    unprofiled: list[str] = []
    for f in dag.functions:
        fprof = profiles.get(f, {})
        cands: list[Candidate] = []
        absent: list[str] = []
        init_cache: dict[int, float] = {}
        for name, kind, kind_value, r, price in fields:
            prof = fprof.get(name)
            if prof is None:
                prof = fprof.get(kind_value)
                if prof is None:
                    absent.append(name)
                    continue
            if prof.kind is not kind:
                raise PlanningError(f"{f}: the profile for {name} is a {prof.kind.value} profile")
            init_s = init_cache.get(id(prof))
            if init_s is None:
                init_s = init_cache[id(prof)] = prof.init.bound(k_sigma)
            cands.extend(evaluate_batched(prof, name, kind, r, price, forecast, ladders.get(kind), init_s))
        if not cands:
            unprofiled.append(f)
            continue
        candidates[f] = tuple(cands)
        front[f] = tuple(pareto_front(cands))
        missing[f] = tuple(absent)
    if unprofiled:
        raise MissingProfileError(unprofiled)
    index = {f: i for i, f in enumerate(dag.functions)}
    return Problem(
        dag,
        sla_s,
        forecast,
        candidates,
        front,
        missing,
        tuple(tuple(index[p] for p in dag.parents[f]) for f in dag.functions),
        tuple(tuple(index[c] for c in dag.children[f]) for f in dag.functions),
        tuple(tuple(c.latency_s for c in front[f]) for f in dag.functions),
        tuple(tuple(c.cost for c in front[f]) for f in dag.functions),
    )


def longest_through(p: Problem, lat: list[float]) -> list[float]:
    """Per function, the longest root→leaf path through it."""
    n = len(lat)
    par, chi = p.par, p.chi
    ready = [0.0] * n
    for i in range(n):
        m = 0.0
        for q in par[i]:
            v = ready[q] + lat[q]
            if v > m:
                m = v
        ready[i] = m
    tail = [0.0] * n
    for i in range(n - 1, -1, -1):
        m = 0.0
        for q in chi[i]:
            v = lat[q] + tail[q]
            if v > m:
                m = v
        tail[i] = m
    return [ready[i] + lat[i] + tail[i] for i in range(n)]


def fastest_longest(p: Problem) -> float:
    return max(longest_through(p, [lt[-1] for lt in p.lats]))
