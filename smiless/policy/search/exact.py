"""The exact search: depth-first branch and bound over the functions in topological order,
configs cheapest first, with admissible bounds (the SLA lower bound and `_CostBound`). It is
the reference the fast search is measured against; a node budget caps it."""

from __future__ import annotations

from smiless.policy.search.problem import Problem, fastest_longest
from smiless.policy.search.types import SLA_EPS

DEFAULT_MAX_NODES = 1_000_000
"""Branch-and-bound nodes before the exact search gives up proving optimality."""


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
    if fastest_longest(p) > sla + SLA_EPS:
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
