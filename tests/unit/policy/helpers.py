"""Shared builders for the policy tests: random DAGs, profiles and small catalogues, and a
brute-force planner to check the searches against."""

from __future__ import annotations

import itertools
import math

from hypothesis import strategies as st

from smiless.catalogue import HardwareConfig, Kind, load_catalogue
from smiless.dag import Dag
from smiless.policy.costmodel import Candidate, Forecast
from smiless.policy.profile import FunctionProfile, InferenceModel, InitModel
from smiless.policy.search import SLA_EPS, Problem
from smiless.policy.workflow import timing

CATALOGUE = load_catalogue()


def profile(
    kind: Kind,
    lam: float,
    alpha: float,
    beta: float,
    gamma: float,
    mu: float,
    sigma: float,
    cs_extra: float = 0.0,
) -> FunctionProfile:
    return FunctionProfile(
        "m", kind, InferenceModel(lam, alpha, beta, gamma), InitModel.single(mu, sigma), cs_extra
    )


@st.composite
def dags(draw: st.DrawFn, max_n: int = 6) -> tuple[list[str], list[tuple[str, str]]]:
    """Any DAG shape: several roots and leaves, diamonds, skip edges, isolated functions."""
    n = draw(st.integers(1, max_n))
    names = [f"f{i}" for i in range(n)]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))) if pairs else []
    perm = draw(st.permutations(names))  # the given order need not be topological
    return list(perm), [(names[i], names[j]) for i, j in chosen]


@st.composite
def function_profiles(draw: st.DrawFn) -> dict[str, FunctionProfile]:
    out: dict[str, FunctionProfile] = {}
    kinds = draw(st.sampled_from([(Kind.CPU,), (Kind.GPU,), (Kind.CPU, Kind.GPU), (Kind.CPU, Kind.GPU)]))
    for kind in kinds:
        scale = 10.0 if kind is Kind.GPU else 1.0
        out[kind.value] = profile(
            kind,
            draw(st.floats(0.05, 2.0)),
            draw(st.floats(0.0, 3.0)) * scale,
            draw(st.floats(0.0, 0.3)),
            draw(st.floats(0.02, 1.0)),
            draw(st.floats(0.0, 6.0)),
            draw(st.floats(0.0, 1.0)),
            draw(st.floats(0.0, 0.2)),
        )
    return out


CONFIG_POOL = ("cpu-1", "cpu-2", "cpu-4", "cpu-8", "gpu-10", "gpu-50")


@st.composite
def catalogues(draw: st.DrawFn, max_m: int = 3) -> dict[str, HardwareConfig]:
    names = draw(st.lists(st.sampled_from(CONFIG_POOL), min_size=min(2, max_m), max_size=max_m, unique=True))
    return {n: CATALOGUE[n] for n in names}


@st.composite
def forecasts(draw: st.DrawFn) -> Forecast:
    return Forecast(
        draw(st.floats(0.2, 40.0)), draw(st.sampled_from([1, 1, 1, 3])), draw(st.floats(0.0, 10.0))
    )


def brute_force(p: Problem) -> tuple[float, float, dict[str, Candidate] | None]:
    """(cheapest feasible cost, least latency, cheapest feasible assignment) over every
    combination of every evaluated candidate (not only the Pareto fronts)."""
    fns = p.dag.functions
    best_cost, best_lat = math.inf, math.inf
    best: dict[str, Candidate] | None = None
    for combo in itertools.product(*(p.candidates[f] for f in fns)):
        lat = timing(p.dag, {f: c.latency_s for f, c in zip(fns, combo, strict=True)}).latency_s
        best_lat = min(best_lat, lat)
        if lat <= p.sla_s + SLA_EPS:
            cost = sum(c.cost for c in combo)
            if cost < best_cost:
                best_cost, best = cost, dict(zip(fns, combo, strict=True))
    return best_cost, best_lat, best


def is_path(dag: Dag, path: tuple[str, ...]) -> bool:
    """A simple root->leaf path of `dag`."""
    return (
        len(path) >= 1
        and not dag.parents[path[0]]
        and not dag.children[path[-1]]
        and len(set(path)) == len(path)
        and all(b in dag.children[a] for a, b in itertools.pairwise(path))
    )
