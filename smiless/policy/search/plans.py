"""From a search's choice to a `Plan`, and the planner's entry points: `fast_plan`,
`exact_plan` and `lowest_latency_plan`, each planned inside the SLA by a headroom.

When no plan meets the SLA they return the lowest-latency plan (every function on its fastest
config) with `feasible=False` and the reason."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from smiless.catalogue import HardwareConfig
from smiless.policy.costmodel import Forecast
from smiless.policy.profile import DEFAULT_K_SIGMA, FunctionProfiles
from smiless.policy.search.exact import DEFAULT_MAX_NODES, exact_search
from smiless.policy.search.fast import fast_search
from smiless.policy.search.problem import Problem, build_problem
from smiless.policy.search.types import SLA_EPS, FunctionPlan, Plan, PlanningError
from smiless.policy.workflow import timing


def finish_plan(
    p: Problem,
    choice: list[int],
    method: str,
    now: float,
    nodes: int,
    optimal: bool,
    paths: tuple[tuple[str, ...], ...] = (),
    note: str = "",
) -> Plan:
    fns = p.dag.functions
    chosen = {f: p.front[f][choice[i]] for i, f in enumerate(fns)}
    t = timing(p.dag, {f: c.latency_s for f, c in chosen.items()})
    feasible = t.latency_s <= p.sla_s + SLA_EPS
    it = p.forecast.it_s
    plans: dict[str, FunctionPlan] = {}
    for f, c in chosen.items():
        offset = t.ready_offset[f]
        stop = it >= c.exec_s  # the same test that chose PREWARM (or a pre-warmed scaled group)
        plans[f] = FunctionPlan(
            f,
            c.config,
            c.kind,
            c.mode,
            c.latency_s,
            c.cost,
            offset,
            t.tail[f],
            c.init_s,
            c.exec_s,
            c.prewarm_window_s,
            now + it + offset - c.init_s if stop else None,
            c.keep_alive_s,
            stop,
            c.batch,
            c.instances,
            c.instance_config,
            c.init_s <= offset,
        )
    cost = sum(c.cost for c in chosen.values())
    if feasible:
        reason = f"meets the SLA: {t.latency_s:.3f} s <= {p.sla_s:g} s along {' -> '.join(t.critical_path)}"
    elif all(j == len(lt) - 1 for j, lt in zip(choice, p.lats, strict=True)):
        reason = (
            f"SLA unreachable: even the fastest configs take {t.latency_s:.3f} s > {p.sla_s:g} s along "
            f"{' -> '.join(t.critical_path)}; this is the lowest-latency plan"
        )
    else:  # never by design; say so plainly rather than blame the SLA
        reason = (
            f"plan breaks the SLA: {t.latency_s:.3f} s > {p.sla_s:g} s along {' -> '.join(t.critical_path)}"
        )
    if note:
        reason += f"; {note}"
    return Plan(
        method,
        p.sla_s,
        feasible,
        reason,
        cost,
        t.latency_s,
        t.critical_path,
        plans,
        optimal and feasible,
        nodes,
        paths,
        p.forecast,
        now,
        p.candidates,
        p.missing,
        p.dag,
    )


DEFAULT_HEADROOM = 0.2
"""The share of the SLA the services and the simulator plan to leave free: a plan that spends
the slack to the last millisecond breaks the SLA whenever inference runs slow or a batch queues.
Where no plan fits inside it, the SLA itself is the target (the sweep: docs/benchmarks/planner.md)."""


def _with_headroom(p: Problem, headroom: float, solve: Callable[[Problem, str], Plan]) -> Plan:
    """`solve` (a search, finished into a plan with an extra note) on `p` with its SLA target
    `headroom` inside the SLA; when that plan does not meet it, on `p` itself, and say so.
    A plan for the tightened target is stated against the SLA itself."""
    if not 0.0 <= headroom < 1.0:
        raise PlanningError(f"headroom must be in [0, 1), got {headroom!r}")
    if headroom == 0.0:
        return solve(p, "")
    plan = solve(replace(p, sla_s=p.sla_s * (1.0 - headroom)), "")
    if plan.feasible:
        why = f"{plan.reason}; planned {headroom:.0%} inside the {p.sla_s:g} s SLA (noise and queueing)"
        return replace(plan, sla_s=p.sla_s, reason=why, target_s=plan.sla_s)
    return solve(p, f"no plan fits {headroom:.0%} inside the SLA: planned to the SLA itself")


def fast_plan(
    functions: Iterable[str],
    edges: Iterable[tuple[str, str]],
    sla_s: float,
    profiles: Mapping[str, FunctionProfiles],
    catalogue: Mapping[str, HardwareConfig],
    forecast: Forecast,
    now: float = 0.0,
    *,
    top_k: int = 1,
    k_sigma: float = DEFAULT_K_SIGMA,
    headroom: float = 0.0,
) -> Plan:
    """Plan an app with the fast path search (`smiless.policy.search.fast`).

    `functions`/`edges`: the DAG; `sla_s`: end-to-end SLA in seconds; `profiles`: function ->
    its profiles by config name or kind; `catalogue`: configs to choose from; `forecast`: IT
    and count; `now`: the instant the IT is measured from (normally the latest arrival), on the
    caller's clock, used only for `prewarm_at_s`; `top_k`: partial plans kept per step;
    `k_sigma`: init is planned at μ + kσ; `headroom`: plan to `sla_s x (1 - headroom)` when
    some plan meets that, else to the SLA itself (see `DEFAULT_HEADROOM`)."""
    p = build_problem(functions, edges, sla_s, profiles, catalogue, forecast, k_sigma)

    def solve(q: Problem, note: str) -> Plan:
        choice, examined, paths = fast_search(q, top_k)
        return finish_plan(q, choice, "fast", now, examined, False, paths, note=note)

    return _with_headroom(p, headroom, solve)


def exact_plan(
    functions: Iterable[str],
    edges: Iterable[tuple[str, str]],
    sla_s: float,
    profiles: Mapping[str, FunctionProfiles],
    catalogue: Mapping[str, HardwareConfig],
    forecast: Forecast,
    now: float = 0.0,
    *,
    k_sigma: float = DEFAULT_K_SIGMA,
    max_nodes: int = DEFAULT_MAX_NODES,
    warm_start: bool = False,
    spine_bound: bool = True,
    headroom: float = 0.0,
) -> Plan:
    """Plan an app with the exact branch and bound (arguments as `fast_plan`).

    `max_nodes` caps the work; past it the best plan found so far is returned with
    `optimal=False`; `headroom` as in `fast_plan`. `warm_start` seeds the bound with the
    fast search's plan; `spine_bound` chooses the bound (see `exact_search`). Neither
    changes the answer, only the work."""
    p = build_problem(functions, edges, sla_s, profiles, catalogue, forecast, k_sigma)

    def solve(q: Problem, note: str) -> Plan:
        seed = fast_search(q)[0] if warm_start else None
        choice, nodes, proven = exact_search(q, max_nodes, seed, spine_bound)
        if not proven:
            ran_out = f"node budget of {max_nodes} ran out: best plan found, optimality not proven"
            note = f"{ran_out}; {note}" if note else ran_out
        return finish_plan(q, choice, "exact", now, nodes, proven, note=note)

    return _with_headroom(p, headroom, solve)


def lowest_latency_plan(
    functions: Iterable[str],
    edges: Iterable[tuple[str, str]],
    sla_s: float,
    profiles: Mapping[str, FunctionProfiles],
    catalogue: Mapping[str, HardwareConfig],
    forecast: Forecast,
    now: float = 0.0,
    *,
    k_sigma: float = DEFAULT_K_SIGMA,
) -> Plan:
    """Every function on its fastest config: whether the SLA is reachable at all (for the
    gateway's check at registration)."""
    p = build_problem(functions, edges, sla_s, profiles, catalogue, forecast, k_sigma)
    return finish_plan(p, [len(lt) - 1 for lt in p.lats], "fastest", now, 1, False)
