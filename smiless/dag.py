"""The DAG of functions an app is: its one type, shared by the app spec, the planner's
workflow decomposition, the gateway's compiled app and the simulator.

Pure structure (names and edges, no models or profiles). `Dag.of` is the one place a
function graph is checked; every error names the offending field (`edges[2].target`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class DagError(ValueError):
    """An invalid DAG; `field` names the offending field (e.g. `edges[2].target`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Dag:
    """A validated DAG. `functions` is in topological order (stable: among functions that are
    ready together, the order they were given in); `parents`/`children` keep edge order."""

    functions: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    parents: Mapping[str, tuple[str, ...]]
    children: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(
        cls, functions: Iterable[str], edges: Iterable[tuple[str, str]], *, merge_duplicates: bool = True
    ) -> Dag:
        """The DAG, or DagError for the first problem in field order. A repeated edge is
        merged into the first, or refused with `merge_duplicates=False` (as an app spec)."""
        names = list(functions)
        if not names:
            raise DagError("functions", "a DAG needs at least one function")
        known: set[str] = set()
        for i, n in enumerate(names):
            if n in known:
                raise DagError(f"functions[{i}]", f"duplicate function {n!r}")
            known.add(n)
        parents: dict[str, list[str]] = {n: [] for n in names}
        children: dict[str, list[str]] = {n: [] for n in names}
        seen: set[tuple[str, str]] = set()
        edge_list: list[tuple[str, str]] = []
        for i, (s, t) in enumerate(edges):
            for end, name in (("source", s), ("target", t)):
                if name not in known:
                    raise DagError(f"edges[{i}].{end}", f"unknown function {name!r}")
            if s == t:
                raise DagError(f"edges[{i}]", f"self-loop on {s!r}")
            if (s, t) in seen:
                if not merge_duplicates:
                    raise DagError(f"edges[{i}]", f"duplicate edge {s} -> {t}")
                continue
            seen.add((s, t))
            edge_list.append((s, t))
            parents[t].append(s)
            children[s].append(t)
        indeg = {n: len(parents[n]) for n in names}
        ready = [n for n in names if indeg[n] == 0]
        order: list[str] = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for c in children[n]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(order) != len(names):
            raise DagError("edges", f"cycle {' -> '.join(_find_cycle(names, children))}")
        return cls(
            tuple(order),
            tuple(edge_list),
            {n: tuple(parents[n]) for n in order},
            {n: tuple(children[n]) for n in order},
        )

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(n for n in self.functions if not self.parents[n])

    @property
    def leaves(self) -> tuple[str, ...]:
        return tuple(n for n in self.functions if not self.children[n])

    @property
    def is_chain(self) -> bool:
        """Every function has at most one parent and one child: stages run one after another."""
        return all(len(self.parents[f]) <= 1 and len(self.children[f]) <= 1 for f in self.functions)


def _find_cycle(names: list[str], children: Mapping[str, list[str]]) -> list[str]:
    """One cycle, closed (`b -> c -> b`), found by depth-first search in the given order."""
    color = dict.fromkeys(names, 0)
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for t in children[n]:
            if color[t] == 1:
                return [*stack[stack.index(t) :], t]
            if color[t] == 0 and (found := dfs(t)):
                return found
        stack.pop()
        color[n] = 2
        return None

    for n in names:
        if color[n] == 0 and (found := dfs(n)):
            return found
    return []
