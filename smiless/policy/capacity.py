"""Cluster capacity: the nodes, what each holds and has free, which hardware configs can run
at all, how many of each fit now, and on which node the next instance goes.

Pure (no I/O). The backends build a `Capacity` from what they observe (a Ray cluster's
nodes, this host's cores and memory); the simulator builds one from a cluster description
(`NodeShape`s, `DEFAULT_CLUSTER`). Every backend and the simulator answer the same three
questions through it: `runnable`, `fits` and `place`.

Resources are a config's `Demand`: its cores, its GPU share as a fraction of one GPU, and its
memory. A node's GPUs count as one pool of shares; that is exact for the catalogue's configs
(none asks more than one GPU) on nodes of one GPU, and what Ray schedules on nodes of several
up to how the shares split across devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from smiless.catalogue import HardwareConfig, Kind

EPS = 1e-6
"""Slack in resource comparisons: ten gpu-10 shares add up to one GPU."""


@dataclass(frozen=True)
class Demand:
    """What one instance of a config holds while it lives."""

    cpus: float
    gpus: float
    memory_mb: int

    @classmethod
    def of(cls, config: HardwareConfig) -> Demand:
        gpus = config.gpu_share / 100.0 if config.kind is Kind.GPU else 0.0
        return cls(config.cores, gpus, config.memory_mb)

    def __str__(self) -> str:
        gpu = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.cpus:g} CPU{gpu}, {self.memory_mb} MiB"


@dataclass(frozen=True)
class Node:
    """One node: its resources in total and free now (after what runs on it)."""

    id: str
    address: str
    cpus: float
    gpus: float
    memory_mb: int
    free_cpus: float
    free_gpus: float
    free_memory_mb: int
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def holds(self, demand: Demand) -> bool:
        """Whether one instance fits on this node when it is empty."""
        return (
            demand.cpus <= self.cpus + EPS
            and demand.gpus <= self.gpus + EPS
            and demand.memory_mb <= self.memory_mb
        )

    def fits(self, demand: Demand) -> int:
        """How many instances fit in what is free now."""
        counts = [
            _count(self.free_cpus, demand.cpus),
            _count(self.free_gpus, demand.gpus),
            _count(float(self.free_memory_mb), float(demand.memory_mb)),
        ]
        return max(0, min(counts))

    def take(self, demand: Demand) -> Node:
        """This node with one more instance on it."""
        return replace(
            self,
            free_cpus=self.free_cpus - demand.cpus,
            free_gpus=self.free_gpus - demand.gpus,
            free_memory_mb=self.free_memory_mb - demand.memory_mb,
        )


def _count(free: float, need: float) -> int:
    if need <= 0:
        return 1 << 30  # a resource the config does not ask for never limits it
    return int((free + EPS) // need)


class Placement(NamedTuple):
    """One live instance: the node it runs on and the function it serves."""

    node: str
    function: str


@dataclass(frozen=True)
class Capacity:
    nodes: tuple[Node, ...]

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def runnable(self, config: HardwareConfig) -> bool:
        """Whether some node can hold one instance of `config` at all (when empty)."""
        demand = Demand.of(config)
        return any(n.holds(demand) for n in self.nodes)

    def mark_runnable(self, catalogue: Mapping[str, HardwareConfig]) -> dict[str, HardwareConfig]:
        """The catalogue with `runnable` set by this cluster; the others stay for planning."""
        return {name: replace(cfg, runnable=self.runnable(cfg)) for name, cfg in catalogue.items()}

    def fits(self, config: HardwareConfig) -> int:
        """How many more instances of `config` fit now, all nodes together."""
        demand = Demand.of(config)
        return sum(n.fits(demand) for n in self.nodes)

    def take(self, node_id: str, config: HardwareConfig) -> Capacity:
        """This capacity with one instance of `config` more on `node_id`."""
        demand = Demand.of(config)
        return Capacity(tuple(n.take(demand) if n.id == node_id else n for n in self.nodes))

    def place(self, config: HardwareConfig, function: str, placements: Iterable[Placement]) -> str | None:
        """The node the next instance of `function` on `config` goes to; None when none has room.

        Among the nodes where it fits now, in this order of preference:
        1. spread: the fewest instances of `function` already there, so one node's loss
           takes as few of a function's instances as possible;
        2. a CPU config keeps off GPU nodes, whose cores the GPU configs need;
        3. best fit: the least of the scarce resource left after it (CPU cores for a CPU
           config, GPU share for a GPU config, then cores), so small configs fill the gaps
           and the big holes stay whole for big configs;
        4. the node id, so the choice is deterministic.
        """
        demand = Demand.of(config)
        same = {n.id: 0 for n in self.nodes}
        for p in placements:
            if p.function == function and p.node in same:
                same[p.node] += 1

        def preference(n: Node) -> tuple[int, bool, float, float, str]:
            cpu_left = n.free_cpus - demand.cpus
            if demand.gpus > 0:
                return (same[n.id], False, n.free_gpus - demand.gpus, cpu_left, n.id)
            return (same[n.id], n.gpus > 0, cpu_left, 0.0, n.id)

        candidates = [n for n in self.nodes if n.fits(demand) >= 1]
        return min(candidates, key=preference).id if candidates else None

    def summary(self) -> str:
        """One line per node's free resources, for error messages."""
        return "; ".join(
            f"{n.id}: {n.free_cpus:g}/{n.cpus:g} CPU, {n.free_gpus:g}/{n.gpus:g} GPU, "
            f"{n.free_memory_mb}/{n.memory_mb} MiB free"
            for n in self.nodes
        )


def reserve(capacity: Capacity, held: Mapping[str, Sequence[Demand]]) -> Capacity:
    """`capacity` with no more free on each node than its total less what `held` lists there:
    what a backend knows it started counts before the cluster's own view catches up."""
    nodes = []
    for n in capacity.nodes:
        mine = held.get(n.id, ())
        nodes.append(
            replace(
                n,
                free_cpus=min(n.free_cpus, n.cpus - sum(d.cpus for d in mine)),
                free_gpus=min(n.free_gpus, n.gpus - sum(d.gpus for d in mine)),
                free_memory_mb=min(n.free_memory_mb, n.memory_mb - sum(d.memory_mb for d in mine)),
            )
        )
    return Capacity(tuple(nodes))


# --- cluster descriptions (the simulator's input) --------------------------------------------


@dataclass(frozen=True)
class NodeShape:
    """`count` identical nodes of a cluster description."""

    name: str
    cpus: float
    memory_mb: int
    gpus: float = 0.0
    count: int = 1


DEFAULT_CLUSTER: tuple[NodeShape, ...] = (
    NodeShape("cpu32", cpus=32, memory_mb=128 * 1024),
    NodeShape("cpu16", cpus=16, memory_mb=64 * 1024, count=2),
    NodeShape("gpu", cpus=16, memory_mb=64 * 1024, gpus=1),
)
"""A realistic small cluster: one 32-core and two 16-core CPU nodes, one 16-core node with
one GPU (4 GiB of memory per core)."""


class ClusterError(ValueError):
    pass


def describe(shapes: Iterable[NodeShape]) -> Capacity:
    """An empty cluster of these shapes; nodes are named `<shape>-<i>`."""
    nodes = []
    for shape in shapes:
        for i in range(shape.count):
            nodes.append(
                Node(
                    f"{shape.name}-{i}",
                    "",
                    shape.cpus,
                    shape.gpus,
                    shape.memory_mb,
                    shape.cpus,
                    shape.gpus,
                    shape.memory_mb,
                    {"shape": shape.name},
                )
            )
    return Capacity(tuple(nodes))


def parse_cluster(doc: Any) -> tuple[NodeShape, ...]:
    """A cluster description from its YAML/JSON document:
    `{nodes: [{name: cpu16, cpus: 16, memory_mb: 65536, gpus: 0, count: 2}, ...]}`."""
    entries = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ClusterError("cluster: nodes must be a non-empty list")
    shapes: list[NodeShape] = []
    for i, entry in enumerate(entries):
        where = f"cluster: nodes[{i}]"
        if not isinstance(entry, dict):
            raise ClusterError(f"{where} must be a mapping")
        try:
            shape = NodeShape(
                str(entry["name"]),
                float(entry["cpus"]),
                int(entry["memory_mb"]),
                float(entry.get("gpus", 0)),
                int(entry.get("count", 1)),
            )
        except KeyError as exc:
            raise ClusterError(f"{where}.{exc.args[0]} is missing") from exc
        except (TypeError, ValueError) as exc:
            raise ClusterError(f"{where}: {exc}") from exc
        for name in ("cpus", "memory_mb", "count"):
            if getattr(shape, name) <= 0:
                raise ClusterError(f"{where}.{name} must be positive")
        if shape.gpus < 0:
            raise ClusterError(f"{where}.gpus must not be negative")
        if any(s.name == shape.name for s in shapes):
            raise ClusterError(f"{where}.name: duplicate node shape {shape.name!r}")
        shapes.append(shape)
    return tuple(shapes)
