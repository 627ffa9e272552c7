"""The strategy optimizer: choose a config (and so a cold-start case) for every function of an
app's DAG, at the least total cost per invocation, so that every root→leaf path meets the SLA.

Objective: minimise Σ_f cost_f(c_f) subject to, for every root→leaf path p,
Σ_{f∈p} latency_f(c_f) ≤ SLA. Costs are separable (see costmodel), latencies are warm stage
latencies: init is hidden by pre-warming or keep-alive.

Two searches share that objective and the candidate table (N functions × M configs, each
reduced to its cost/latency Pareto front, which never loses the optimum):

- `fast_plan`, the SMIless-style search. The workflow manager decomposes the DAG into simple
  root→leaf paths that cover every function, heaviest (slowest at the fastest configs) first.
  Each path is searched against the full SLA: start from every stage's cheapest config that
  survives the SLA lower bound (a config is pruned when it would break the SLA even with every
  other stage at its fastest), repair the SLA with the upgrade that buys the most useful
  latency per unit of cost (also trying the cheapest single upgrade that closes the gap),
  keeping the top-K partial plans per step (K = 1: greedy), then reclaim slack by downgrading
  where the path has room. Merging is "a function on several paths gets the fastest of its
  per-path choices", applied as the paths go: a function an earlier path planned may only get
  faster on a later one, so every searched path stays within the SLA. A cover is not every
  path, so the merged plan is re-checked on the whole DAG, repaired where a path outside the
  cover breaks the SLA, and its slack reclaimed again. It never returns an infeasible plan when
  a feasible one exists: each repair only stops when the SLA holds, and the all-fastest plan
  meets it whenever anything does (so no top-K can make it miss one).
- `exact_plan`, depth-first branch and bound over the functions in topological order, configs
  cheapest first, with admissible bounds: the SLA lower bound (finish time so far plus the
  fastest possible remainder to any leaf) and a cost lower bound (remaining functions at their
  cheapest configs, tightened by a Lagrangian bound on the DAG's slowest path, `_CostBound`).
  It is the reference the fast search is measured against; a node budget caps it, and the
  plan says whether optimality was proven.

When no plan meets the SLA both return the lowest-latency plan (every function on its fastest
config) with `feasible=False` and the reason.

The services and the simulator plan with `sla_aware_plan`: the fast search for the predictor's
shrunk IT, or for its median IT where even a cold start meets the SLA (see there).

No clocks and no I/O: time comes in as `now`, and the result carries its reasons.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.autoscaler import ResourceLadder
from smiless.policy.costmodel import Candidate, Forecast, Mode, evaluate_batched, pareto_front
from smiless.policy.profile import DEFAULT_K_SIGMA, FunctionProfiles
from smiless.policy.workflow import Dag, decompose, timing

SLA_EPS = 1e-9
"""Latency sums within this of the SLA meet it (float sums of the same terms in another order)."""

DEFAULT_MAX_NODES = 1_000_000
"""Branch-and-bound nodes before the exact search gives up proving optimality (~1 s here)."""


class PlanningError(ValueError):
    """The inputs cannot be planned; the message names what is wrong or missing."""


class MissingProfileError(PlanningError):
    """Functions with no profile for any config in the catalogue: planning them would mean
    making numbers up, so the planner refuses and names them."""

    def __init__(self, functions: Iterable[str]) -> None:
        self.functions = tuple(functions)
        super().__init__(f"no profile for any config of: {', '.join(self.functions)}")


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """One function's part of a plan: what the controller starts, when, and for how long."""

    function: str
    config: str
    kind: Kind
    mode: Mode
    latency_s: float
    """Planned stage latency (the share of the SLA this function uses)."""
    cost: float
    """Per app invocation."""
    ready_offset_s: float
    """Its inputs arrive this long after the request (the longest upstream latency)."""
    init_s: float
    exec_s: float
    prewarm_window_s: float
    """Idle gap between serving and the next pre-warm; 0 when kept alive."""
    prewarm_at_s: float | None
    """When to start the next instance (now + IT + ready offset - init); None when it is kept
    warm, inf when no arrival is predicted."""
    keep_alive_s: float
    """How long to keep instances after serving; 0 = stop after serving."""
    stop_after_serving: bool
    batch: int
    instances: int
    instance_config: str
    init_hidden: bool
    """Init fits within the upstream latency: started when the request arrives, this stage is
    ready before its inputs, so it needs no forecast to avoid a cold start (the cascade)."""


@dataclass(frozen=True)
class Plan:
    """A whole app's plan with its reasons. `functions` is in topological order."""

    method: str
    sla_s: float
    feasible: bool
    reason: str
    cost: float
    """Per app invocation: Σ of the functions' costs."""
    latency_s: float
    """End to end: the longest root→leaf path."""
    critical_path: tuple[str, ...]
    functions: dict[str, FunctionPlan]
    optimal: bool
    """Proven minimal (exact search that finished within its node budget)."""
    nodes: int
    """Search effort: partial plans examined."""
    paths: tuple[tuple[str, ...], ...]
    """The workflow manager's decomposition (fast search)."""
    forecast: Forecast
    now: float
    candidates: dict[str, tuple[Candidate, ...]] = field(repr=False)
    """Every config evaluated per function, for ExplainPlan."""
    missing: dict[str, tuple[str, ...]] = field(repr=False)
    """Per function, catalogue configs it has no profile for."""
    dag: Dag = field(repr=False)
    target_s: float | None = None
    """The end-to-end latency it was planned to: inside the SLA by the planner's headroom
    (`DEFAULT_HEADROOM`); None: the SLA itself. Whatever changes the plan's stage latencies
    afterwards (the controller keeping a slower instance) must stay within it too."""

    @property
    def latency_target_s(self) -> float:
        return self.sla_s if self.target_s is None else self.target_s

    @property
    def configs(self) -> dict[str, str]:
        return {f: p.config for f, p in self.functions.items()}


@dataclass(frozen=True, slots=True)
class Rejected:
    config: str
    cost: float | None
    latency_s: float | None
    mode: Mode | None
    reason: str


@dataclass(frozen=True, slots=True)
class FunctionExplanation:
    plan: FunctionPlan
    rejected: tuple[Rejected, ...]


# --- the problem -----------------------------------------------------------------------------


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


# --- DAG arithmetic on index arrays ------------------------------------------------------------


def _through(p: Problem, lat: list[float]) -> list[float]:
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


def _fastest_longest(p: Problem) -> float:
    return max(_through(p, [lt[-1] for lt in p.lats]))


# --- fast search ---------------------------------------------------------------------------------


def _path_search(
    lats: list[tuple[float, ...]], costs: list[tuple[float, ...]], budget: float, top_k: int
) -> tuple[list[int], int]:
    """Search one path: choice index per stage (into its front) and the states examined.

    Start cheapest-first from the cheapest config that survives the SLA lower bound, repair
    the SLA with upgrades ranked by cost per useful second saved (`Δcost / min(Δlatency, gap)`:
    a saving beyond the gap buys nothing), keep the K best partial plans per step, then
    reclaim slack. Worked example: gap 0.3 s; upgrade A saves 0.5 s for 2 units (2/0.3 = 6.7
    per useful second), upgrade B saves 0.2 s for 1 unit (5 per second): B first, then the
    remaining 0.1 s gap is closed by whichever costs least per 0.1 s."""
    n = len(lats)
    min_total = sum(lt[-1] for lt in lats)
    if min_total > budget + SLA_EPS:
        return [len(lt) - 1 for lt in lats], 1
    slack = budget - min_total
    start: list[int] = []
    for lt in lats:
        cap = lt[-1] + slack + SLA_EPS
        j = 0
        while lt[j] > cap:
            j += 1
        start.append(j)
    total = sum(lats[i][start[i]] for i in range(n))
    cost = sum(costs[i][start[i]] for i in range(n))
    beam: list[tuple[float, float, float, list[int]]] = [(cost, total, cost, start)]
    done: list[tuple[float, list[int]]] = []
    examined = 1
    while beam:
        children: list[tuple[float, float, float, list[int]]] = []
        seen: set[tuple[int, ...]] = set()
        for _, tot, cst, choice in beam:
            gap = tot - budget
            if gap <= SLA_EPS:
                done.append(_reclaim_path(choice, lats, costs, budget, tot, cst))
                continue
            moves: list[tuple[float, float, int, int]] = []
            close_dc, close_i, close_j = float("inf"), -1, -1
            for i in range(n):
                lt, ct = lats[i], costs[i]
                cur = choice[i]
                l0, c0 = lt[cur], ct[cur]
                for j in range(cur + 1, len(lt)):
                    dl = l0 - lt[j]
                    dc = ct[j] - c0
                    if dl < gap:
                        moves.append((dc / dl, -dl, i, j))
                    else:
                        moves.append((dc / gap, -dl, i, j))
                        if dc < close_dc:
                            close_dc, close_i, close_j = dc, i, j
            if close_i >= 0:
                # The cheapest single upgrade that closes the gap is a complete plan too: the
                # ratio rule alone can take a cheap partial step and then pay twice to close
                # the rest (the classic knapsack-greedy trap).
                closed = choice.copy()
                closed[close_i] = close_j
                ctot = tot + lats[close_i][close_j] - lats[close_i][choice[close_i]]
                done.append(_reclaim_path(closed, lats, costs, budget, ctot, cst + close_dc))
            if not moves:  # every stage at its fastest: over the budget only by float rounding
                done.append((cst, choice))
                continue
            best = heapq.nsmallest(top_k, moves) if top_k > 1 else [min(moves)]
            for score, neg_dl, i, j in best:
                nc = choice.copy()
                cur = nc[i]
                nc[i] = j
                key = tuple(nc)
                if key in seen:
                    continue
                seen.add(key)
                ntot = tot + neg_dl
                ncst = cst + costs[i][j] - costs[i][cur]
                # rank: cost so far plus the remaining gap priced at this move's rate
                children.append((ncst + max(ntot - budget, 0.0) * score, ntot, ncst, nc))
                examined += 1
        beam = heapq.nsmallest(top_k, children, key=lambda s: s[0]) if len(children) > top_k else children
    return min(done, key=lambda d: d[0])[1], examined


def _reclaim_path(
    choice: list[int],
    lats: list[tuple[float, ...]],
    costs: list[tuple[float, ...]],
    budget: float,
    total: float,
    cost: float,
) -> tuple[float, list[int]]:
    """Downgrade, biggest saving first, while the path stays within the budget."""
    choice = choice.copy()
    while True:
        room = budget - total + SLA_EPS
        best_saving, best_i, best_j = 0.0, -1, -1
        for i, cur in enumerate(choice):
            lt, ct = lats[i], costs[i]
            for j in range(cur):  # cheapest first: the first that fits saves the most here
                if lt[j] - lt[cur] <= room:
                    if ct[cur] - ct[j] > best_saving:
                        best_saving, best_i, best_j = ct[cur] - ct[j], i, j
                    break
        if best_i < 0:
            return cost, choice
        total += lats[best_i][best_j] - lats[best_i][choice[best_i]]
        cost -= best_saving
        choice[best_i] = best_j


def _repair_dag(p: Problem, choice: list[int]) -> int:
    """Upgrade on violating paths until every root→leaf path meets the SLA; returns steps.
    Needed because the decomposition covers functions, not every path."""
    sla = p.sla_s
    steps = 0
    while True:
        lat = [p.lats[i][c] for i, c in enumerate(choice)]
        through = _through(p, lat)
        best: tuple[float, float, int, int] | None = None
        for i, t in enumerate(through):
            gap = t - sla
            if gap <= SLA_EPS:
                continue
            lt, ct = p.lats[i], p.costs[i]
            cur = choice[i]
            for j in range(cur + 1, len(lt)):
                dl = lt[cur] - lt[j]
                move = ((ct[j] - ct[cur]) / (dl if dl < gap else gap), -dl, i, j)
                if best is None or move < best:
                    best = move
        if best is None:
            return steps
        choice[best[2]] = best[3]
        steps += 1


def _reclaim_dag(p: Problem, choice: list[int]) -> int:
    """Downgrade, biggest saving first, where every path through the function has room."""
    sla = p.sla_s
    steps = 0
    while True:
        lat = [p.lats[i][c] for i, c in enumerate(choice)]
        through = _through(p, lat)
        best_saving, best_i, best_j = 0.0, -1, -1
        for i, cur in enumerate(choice):
            room = sla - through[i] + SLA_EPS
            lt, ct = p.lats[i], p.costs[i]
            for j in range(cur):
                if lt[j] - lt[cur] <= room:
                    if ct[cur] - ct[j] > best_saving:
                        best_saving, best_i, best_j = ct[cur] - ct[j], i, j
                    break
        if best_i < 0:
            return steps
        choice[best_i] = best_j
        steps += 1


def fast_search(p: Problem, top_k: int = 1) -> tuple[list[int], int, tuple[tuple[str, ...], ...]]:
    """Choice index per function (topological order), states examined, paths searched."""
    if top_k < 1:
        raise PlanningError(f"top_k must be >= 1, got {top_k}")
    fastest = [len(lt) - 1 for lt in p.lats]
    if _fastest_longest(p) > p.sla_s + SLA_EPS:
        return fastest, 1, ()
    fns = p.dag.functions
    index = {f: i for i, f in enumerate(fns)}
    weight = {f: p.lats[i][-1] for i, f in enumerate(fns)}
    paths = tuple(decompose(p.dag, weight))
    choice = [0] * len(fns)
    planned = [False] * len(fns)
    examined = 0
    for path in paths:
        ids = [index[f] for f in path]
        # A function an earlier path already planned may only get faster here (its front from
        # the current choice on), so every earlier path keeps meeting the SLA: merging per
        # function is "the fastest of its per-path choices", applied as the paths go.
        lo = [choice[i] if planned[i] else 0 for i in ids]
        got, n = _path_search(
            [p.lats[i][k:] for i, k in zip(ids, lo, strict=True)],
            [p.costs[i][k:] for i, k in zip(ids, lo, strict=True)],
            p.sla_s,
            top_k,
        )
        examined += n
        for i, k, j in zip(ids, lo, got, strict=True):
            choice[i] = k + j
            planned[i] = True
    if len(paths) > 1:
        examined += _repair_dag(p, choice)
        examined += _reclaim_dag(p, choice)
    return choice, examined, paths


# --- exact search ----------------------------------------------------------------------------------


class _CostBound:
    """Admissible lower bound on the cost of functions i.. (topological order).

    Every function off the spine (the DAG's slowest root→leaf path at the fastest configs)
    costs at least its cheapest config. The spine's unassigned functions must fit together
    into what the spine has left, R = SLA - finish of its last assigned function, so for any
    μ ≥ 0 they cost at least Σ_j min_c (cost_j(c) + μ·lat_j(c)) - μ·R (Lagrangian relaxation
    of that one path constraint). The bound is the best of a few μ, taken at the slopes of
    the spine's cost/latency fronts; μ = 0 is the plain "cheapest config each" bound."""

    def __init__(self, p: Problem, tail_min: list[float], use_spine: bool = True) -> None:
        n = len(p.lats)
        lats, costs = p.lats, p.costs
        # the spine: follow, from the root with the longest fastest-config path, the child
        # that keeps the path longest
        head = [0.0] * n
        for i in range(n):
            head[i] = max((head[q] + lats[q][-1] for q in p.par[i]), default=0.0)
        spine: list[int] = []
        i = max((r for r in range(n) if not p.par[r]), key=lambda r: lats[r][-1] + tail_min[r])
        while True:
            spine.append(i)
            if not p.chi[i]:
                break
            i = max(p.chi[i], key=lambda c: lats[c][-1] + tail_min[c])
        self.on_spine = [False] * n
        for i in spine:
            self.on_spine[i] = True
        self.prev_spine = [-1] * (n + 1)
        last = -1
        for i in range(n + 1):
            self.prev_spine[i] = last
            if i < n and self.on_spine[i]:
                last = i
        slopes = sorted(
            {
                (costs[i][j + 1] - costs[i][j]) / (lats[i][j] - lats[i][j + 1])
                for i in spine
                for j in range(len(lats[i]) - 1)
            }
        )
        if len(slopes) > 10:
            slopes = [slopes[round(k * (len(slopes) - 1) / 9)] for k in range(10)]
        self.mus = [0.0, *slopes] if use_spine else [0.0]
        self.rest_min = [0.0] * (n + 1)  # cheapest possible cost of functions i..
        self.off_min = [0.0] * (n + 1)  # ... of those off the spine
        self.spine_sum = [[0.0] * (n + 1) for _ in self.mus]  # Σ min(cost + μ·lat) on the spine
        for i in range(n - 1, -1, -1):
            self.rest_min[i] = self.rest_min[i + 1] + costs[i][0]
            on = self.on_spine[i]
            self.off_min[i] = self.off_min[i + 1] + (0.0 if on else costs[i][0])
            for k, mu in enumerate(self.mus):
                add = min(c + mu * lt for c, lt in zip(costs[i], lats[i], strict=True)) if on else 0.0
                self.spine_sum[k][i] = self.spine_sum[k][i + 1] + add

    def at(self, i: int, remaining: float) -> float:
        """Lower bound on the cost of functions i.. when the spine has `remaining` seconds."""
        best = 0.0
        for mu, sums in zip(self.mus, self.spine_sum, strict=True):
            v = sums[i] - mu * remaining
            if v > best:
                best = v
        return self.off_min[i] + best


def exact_search(
    p: Problem,
    max_nodes: int = DEFAULT_MAX_NODES,
    incumbent: list[int] | None = None,
    spine_bound: bool = True,
) -> tuple[list[int], int, bool]:
    """Choice per function, nodes expanded, and whether optimality is proven.

    `incumbent` (a feasible choice, e.g. the fast search's) only tightens the cost bound
    from the start; the answer is the same without it. `spine_bound=False` keeps only the
    textbook bound (every remaining function at its cheapest config), which is what an A*
    with h = Σ cheapest would use; the benchmark reports both."""
    n = len(p.lats)
    lats, costs, par, sla = p.lats, p.costs, p.par, p.sla_s
    fastest = [len(lt) - 1 for lt in lats]
    if _fastest_longest(p) > sla + SLA_EPS:
        return fastest, 1, True
    # fastest possible remainder after each function, to any leaf (SLA lower bound)
    tail_min = [0.0] * n
    for i in range(n - 1, -1, -1):
        m = 0.0
        for q in p.chi[i]:
            v = lats[q][-1] + tail_min[q]
            if v > m:
                m = v
        tail_min[i] = m
    bound = _CostBound(p, tail_min, spine_bound)
    best_cost = float("inf")
    best_choice = fastest
    if incumbent is not None:
        best_cost = sum(costs[i][j] for i, j in enumerate(incumbent)) * (1 + 1e-12)
        best_choice = incumbent.copy()
    finish = [0.0] * n
    choice = [0] * n
    nodes = 0
    exhausted = False
    on_spine, prev_spine, rest_min = bound.on_spine, bound.prev_spine, bound.rest_min

    def dfs(i: int, cost: float) -> None:
        nonlocal best_cost, best_choice, nodes, exhausted
        if i == n:
            best_cost, best_choice = cost, choice.copy()
            return
        start = 0.0
        for q in par[i]:
            if finish[q] > start:
                start = finish[q]
        limit = sla + SLA_EPS - tail_min[i] - start
        rest = rest_min[i + 1]
        spine = on_spine[i]
        if not spine:  # the spine's remaining budget does not depend on this choice
            k = prev_spine[i]
            rest = bound.at(i + 1, sla - (finish[k] if k >= 0 else 0.0))
        lt, ct = lats[i], costs[i]
        for j in range(len(lt)):
            c = cost + ct[j]
            if c + rest_min[i + 1] >= best_cost:
                return  # costs ascend: every later config is dearer still
            if lt[j] > limit:
                continue  # latencies descend: a later, faster config may fit
            f = start + lt[j]
            if c + (bound.at(i + 1, sla - f) if spine else rest) >= best_cost:
                continue  # a faster config leaves more budget for the rest: try it
            nodes += 1
            if nodes > max_nodes:
                exhausted = True
                return
            finish[i] = f
            choice[i] = j
            dfs(i + 1, c)
            if exhausted:
                return

    dfs(0, 0.0)
    if best_cost == float("inf"):  # budget ran out before any plan: the fastest one is feasible
        return fastest, nodes, False
    return best_choice, nodes, not exhausted


# --- plans -------------------------------------------------------------------------------------


def _finish(
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
"""The share of the SLA the services and the simulator plan to leave free. A plan that
spends the slack to the last millisecond (on cheaper configs, bigger batches) breaks the SLA
whenever inference runs a few percent slow or a batch queues behind another: in the policy
benchmark (5 % inference noise), planning to the SLA itself left 10-18 % of
voice-assistant's requests over it at SLA 4-5 s. Swept over 0.1, 0.15, 0.2 and 0.25 on that
benchmark, 0.2 broke the SLA least (≤ 0.7 % everywhere but amber-alert at 2 s, 2.8 %, and the
first arrival of image-query at 2-3 s); 0.1 still hit a plan that thrashed (voice-assistant
at 6 s: 48 %). Where no plan fits inside the headroom, the SLA itself is the target."""


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
    """Plan an app with the fast path search (see the module docstring).

    `functions`/`edges`: the DAG; `sla_s`: end-to-end SLA in seconds; `profiles`: function ->
    its profiles by config name or kind; `catalogue`: configs to choose from; `forecast`: IT
    and count; `now`: the instant the IT is measured from (normally the latest arrival), on the
    caller's clock, used only for `prewarm_at_s`; `top_k`: partial plans kept per step;
    `k_sigma`: init is planned at μ + kσ; `headroom`: plan to `sla_s x (1 - headroom)` when
    some plan meets that, else to the SLA itself (see `DEFAULT_HEADROOM`)."""
    p = build_problem(functions, edges, sla_s, profiles, catalogue, forecast, k_sigma)

    def solve(q: Problem, note: str) -> Plan:
        choice, examined, paths = fast_search(q, top_k)
        return _finish(q, choice, "fast", now, examined, False, paths, note=note)

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
        return _finish(q, choice, "exact", now, nodes, proven, note=note)

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
    return _finish(p, [len(lt) - 1 for lt in p.lats], "fastest", now, 1, False)


_COLD_ROUNDS = 4
"""Plans `sla_aware_plan` tries for the median IT before it keeps the shrunk IT's."""


def cold_latency_s(plan: Plan) -> float:
    """End-to-end latency of a request that finds no instance warm: every stage is started
    when it arrives (the controller starts at once a stage whose inputs are due sooner than
    its init) and serves at the later of its init (μ + kσ) and its inputs."""
    finish: dict[str, float] = {}
    for f in plan.dag.functions:  # topological order
        fp = plan.functions[f]
        inputs = max((finish[u] for u in plan.dag.parents[f]), default=0.0)
        finish[f] = max(fp.init_s, inputs) + fp.latency_s
    return max(finish.values())


def _cost_at(plan: Plan, it_s: float) -> float:
    """Per invocation if arrivals come every `it_s`: a kept-alive function stays up through
    each gap (its cost scales with the IT), a stopped one pays one lifetime per arrival."""
    return sum(
        fp.cost if fp.stop_after_serving else fp.cost * it_s / plan.forecast.it_s
        for fp in plan.functions.values()
    )


def _missed_cost(plan: Plan) -> float:
    """Per invocation if every pre-warm misses its arrival: a stopped function pays a second
    lifetime (the wasted pre-warm, or the start on demand that replaces it)."""
    return sum(fp.cost * (2.0 if fp.stop_after_serving else 1.0) for fp in plan.functions.values())


def sla_aware_plan(
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
    """`fast_plan` (same arguments), with the IT the SLA can afford.

    The SMIless predictor shrinks its median IT (`Forecast.it_median_s`) so that it rarely
    over-estimates, because a pre-warm timed by an over-estimate comes late and the request
    meets a cold start. Where the plan for the median IT meets its latency target even from
    cold (`cold_latency_s`), a late pre-warm costs no violation and the shrink buys only idle
    time (a bursty app's shrunk IT is one slot: kept warm for good): that plan is taken if,
    even with every pre-warm missing its arrival, it costs less than the shrunk IT's plan at
    the median's pace (the median is only a median). Otherwise, or without a median, the plan
    for the shrunk IT."""
    functions, edges = list(functions), list(edges)

    def plan_for(fc: Forecast, sla: float) -> Plan:
        return fast_plan(
            functions, edges, sla, profiles, catalogue, fc, now, top_k=top_k, k_sigma=k_sigma,
            headroom=headroom,
        )  # fmt: skip

    safe = plan_for(forecast, sla_s)
    median = forecast.it_median_s
    if median is None or median <= forecast.it_s or not safe.feasible:
        return safe
    # The median's plan, made faster until its cold latency fits the safe plan's target: each
    # round plans to a warm latency below the last one's by what its cold start overshot.
    target = safe.latency_target_s
    bold_forecast = replace(forecast, it_s=median)
    tighter = sla_s
    for _ in range(_COLD_ROUNDS):
        bold = plan_for(bold_forecast, tighter)
        if not bold.feasible:
            break
        cold = cold_latency_s(bold)
        if cold <= target + SLA_EPS:
            if _missed_cost(bold) >= _cost_at(safe, median):
                break  # made so fast that it would not pay for itself if its pre-warms missed
            why = (
                f"{bold.reason}; planned for the median IT {median:g} s, not the shrunk {forecast.it_s:g} s: "
                f"a cold start meets the target {target:.3f} s too ({cold:.3f} s)"
            )
            return replace(bold, sla_s=sla_s, reason=why, target_s=bold.latency_target_s)
        need = bold.latency_s - (cold - target) - SLA_EPS  # warm latency must drop by the overshoot
        if need <= 0.0:
            break
        tighter = need / (1.0 - headroom)
    return safe


# --- explanation ---------------------------------------------------------------------------------


def explain(plan: Plan) -> tuple[FunctionExplanation, ...]:
    """Per function: the plan, and every other config with its cost and why it lost."""
    t = timing(plan.dag, {f: fp.latency_s for f, fp in plan.functions.items()})
    ready, tail = t.ready_offset, t.tail
    out: list[FunctionExplanation] = []
    for f, fp in plan.functions.items():
        rejected: list[Rejected] = []
        for c in plan.candidates[f]:
            if c.config == fp.config:
                continue
            through = ready[f] + c.latency_s + tail[f]
            if through > plan.sla_s + SLA_EPS and through > plan.latency_s + SLA_EPS:
                why = f"too slow: a path through it would take {through:.3f} s > SLA {plan.sla_s:g} s"
            elif c.cost > fp.cost:
                why = f"costs {c.cost - fp.cost:.3g} more per invocation"
                if c.latency_s >= fp.latency_s:
                    why += " and is no faster"
            elif c.cost == fp.cost:
                why = "same cost, no better"
            elif plan.feasible:
                why = (
                    f"cheaper by {fp.cost - c.cost:.3g} and fits on its own; "
                    f"the {plan.method} search kept {fp.config}"
                )
            else:
                why = f"cheaper but slower ({c.latency_s:.3f} s); the SLA is unreachable: latency first"
            rejected.append(Rejected(c.config, c.cost, c.latency_s, c.mode, why))
        for name in plan.missing.get(f, ()):
            rejected.append(Rejected(name, None, None, None, "no profile for this config"))
        out.append(FunctionExplanation(fp, tuple(rejected)))
    return tuple(out)
