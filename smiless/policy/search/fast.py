"""The SMIless-style fast search: path by path over the workflow manager's decomposition.

Each path (heaviest first) is searched against the full SLA: start from every stage's cheapest
config that survives the SLA lower bound, repair the SLA with the upgrade that buys the most
useful latency per unit of cost, keeping the top-K partial plans per step, then reclaim slack.
A function on several paths gets the fastest of its per-path choices, applied as the paths go,
so every searched path stays within the SLA. A cover is not every path, so the merged plan is
re-checked on the whole DAG, repaired and reclaimed again. It never returns an infeasible plan
when a feasible one exists: each repair stops only when the SLA holds.
"""

from __future__ import annotations

import heapq

from smiless.policy.search.problem import Problem, fastest_longest, longest_through
from smiless.policy.search.types import SLA_EPS, PlanningError
from smiless.policy.workflow import decompose


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
        through = longest_through(p, lat)
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
        through = longest_through(p, lat)
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
    if fastest_longest(p) > p.sla_s + SLA_EPS:
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
