"""The workflow manager's graph work: decompose a DAG (`smiless.dag.Dag`) into simple
root→leaf paths that cover every function, and measure latencies along it.

The reference peels longest paths from a single (root, leaf) pair and, with several roots or
leaves, keeps only the last pair's paths, so some functions are never planned. Here any DAG
works: several roots and leaves, diamonds, skip edges. The decomposition is a cover, not the
set of all paths (that can be exponential), so a plan merged from per-path results must be
re-checked on the whole DAG: `longest_path` is the maximum over every root→leaf path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from smiless.dag import Dag as Dag  # re-exported: the search and the replay CLI import it from here


def decompose(dag: Dag, weight: Mapping[str, float] | None = None) -> list[tuple[str, ...]]:
    """Simple root→leaf paths that together cover every function, heaviest first.

    `weight` (default 1 per function, i.e. hop count as in the reference) decides which path
    through a function is taken: the heaviest one, so with latencies as weights the first path
    is the DAG's critical path. Each round takes the uncovered function whose heaviest path is
    heaviest and adds that path, so every path covers at least one new function and there are
    at most N paths. Deterministic: ties go to the earlier function in topological order.
    """
    w = {f: 1.0 for f in dag.functions} if weight is None else weight
    up: dict[str, float] = {}
    prev: dict[str, str | None] = {}
    for f in dag.functions:  # heaviest path from any root down to f, inclusive
        best, arg = 0.0, None
        for p in dag.parents[f]:
            if arg is None or up[p] > best:
                best, arg = up[p], p
        up[f], prev[f] = best + w[f], arg
    down: dict[str, float] = {}
    nxt: dict[str, str | None] = {}
    for f in reversed(dag.functions):  # heaviest path from f down to any leaf, inclusive
        best, arg = 0.0, None
        for c in dag.children[f]:
            if arg is None or down[c] > best:
                best, arg = down[c], c
        down[f], nxt[f] = best + w[f], arg
    through = sorted(dag.functions, key=lambda f: -(up[f] + down[f] - w[f]))  # stable sort
    covered: set[str] = set()
    paths: list[tuple[str, ...]] = []
    for f in through:
        if f in covered:
            continue
        head: list[str] = []
        up_step = prev[f]
        while up_step is not None:
            head.append(up_step)
            up_step = prev[up_step]
        head.reverse()
        tail: list[str] = []
        down_step = nxt[f]
        while down_step is not None:
            tail.append(down_step)
            down_step = nxt[down_step]
        path = (*head, f, *tail)
        covered.update(path)
        paths.append(path)
    return paths


def all_paths(dag: Dag) -> Iterator[tuple[str, ...]]:
    """Every simple root→leaf path (exponential in general: for tests and small DAGs)."""

    def walk(prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        kids = dag.children[prefix[-1]]
        if not kids:
            yield prefix
        for c in kids:
            yield from walk((*prefix, c))

    for r in dag.roots:
        yield from walk((r,))


@dataclass(frozen=True, slots=True)
class Timing:
    """Latencies along the DAG for one assignment of stage latencies."""

    ready_offset: Mapping[str, float]
    """When a function's inputs are all there, after the request arrives (longest upstream)."""
    tail: Mapping[str, float]
    """Longest latency after a function finishes, to any leaf."""
    latency_s: float
    """End to end: the longest root→leaf path."""
    critical_path: tuple[str, ...]

    def through(self, function: str, latency: float) -> float:
        """Longest path through `function` if it took `latency`: what a change there costs."""
        return self.ready_offset[function] + latency + self.tail[function]


def timing(dag: Dag, latency: Mapping[str, float]) -> Timing:
    """Ready offsets, tails and the critical path, in O(N + E)."""
    ready: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for f in dag.functions:
        best, arg = 0.0, None
        for p in dag.parents[f]:
            v = ready[p] + latency[p]
            if arg is None or v > best:
                best, arg = v, p
        ready[f], via[f] = best, arg
    tail: dict[str, float] = {}
    for f in reversed(dag.functions):
        best = 0.0
        for c in dag.children[f]:
            v = latency[c] + tail[c]
            if v > best:
                best = v
        tail[f] = best
    end = max(dag.leaves, key=lambda f: ready[f] + latency[f])
    path = [end]
    step = via[end]
    while step is not None:
        path.append(step)
        step = via[step]
    path.reverse()
    return Timing(ready, tail, ready[end] + latency[end], tuple(path))


def path_latency(path: Sequence[str], latency: Mapping[str, float]) -> float:
    return sum(latency[f] for f in path)
