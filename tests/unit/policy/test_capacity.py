"""The capacity model: which configs a cluster can run at all, how many fit now, and the
placement rule (spread one function, keep CPU configs off GPU nodes, best fit)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smiless.catalogue import HardwareConfig, load_catalogue
from smiless.policy.capacity import (
    DEFAULT_CLUSTER,
    Capacity,
    ClusterError,
    Demand,
    Node,
    NodeShape,
    Placement,
    describe,
    parse_cluster,
    reserve,
)

CATALOGUE = load_catalogue()
CONFIGS = list(CATALOGUE.values())


def node(
    nid: str, cpus: float, memory_mb: int = 1 << 20, gpus: float = 0.0, free_cpus: float | None = None
) -> Node:
    free = cpus if free_cpus is None else free_cpus
    return Node(nid, "", cpus, gpus, memory_mb, free, gpus, memory_mb)


@st.composite
def clusters(draw: st.DrawFn) -> Capacity:
    """Up to five nodes of any size, each partly used."""
    nodes = []
    for i in range(draw(st.integers(1, 5))):
        cpus = float(draw(st.integers(1, 32)))
        gpus = float(draw(st.sampled_from([0, 0, 1, 2])))
        memory = draw(st.integers(1, 64)) * 1024
        nodes.append(
            Node(
                f"n{i}",
                "",
                cpus,
                gpus,
                memory,
                draw(st.integers(0, int(cpus))) * 1.0,
                draw(st.sampled_from([0.0, 0.3, 0.5, 1.0])) * gpus,
                draw(st.integers(0, memory)),
            )
        )
    return Capacity(tuple(nodes))


placements_st = st.lists(
    st.builds(Placement, st.sampled_from(["n0", "n1", "n2", "n3", "n4"]), st.sampled_from(["f", "g"])),
    max_size=8,
)


def test_demand_of_configs() -> None:
    assert Demand.of(CATALOGUE["cpu-4"]) == Demand(4, 0.0, 8192)
    assert Demand.of(CATALOGUE["gpu-30"]) == Demand(1, 0.3, 8192)


def test_runnable_on_a_two_core_host_and_on_the_default_cluster() -> None:
    host = Capacity((node("host", 2, 16 * 1024),))
    marked = host.mark_runnable(CATALOGUE)
    assert {n for n, c in marked.items() if c.runnable} == {"cpu-1", "cpu-2"}
    assert set(marked) == set(CATALOGUE), "unrunnable configs stay for planning"
    cluster = describe(DEFAULT_CLUSTER)
    assert all(cluster.runnable(c) for c in CONFIGS), "the default cluster runs the whole catalogue"


def test_memory_and_gpu_limit_what_runs() -> None:
    small = Capacity((node("a", 16, memory_mb=8192),))
    assert small.runnable(CATALOGUE["cpu-4"]) and not small.runnable(CATALOGUE["cpu-8"])
    gpu = Capacity((node("g", 4, gpus=1),))
    assert gpu.fits(CATALOGUE["gpu-10"]) == 4, "four cores: four GPU configs of one core each"
    assert Capacity((node("g", 16, gpus=1),)).fits(CATALOGUE["gpu-10"]) == 10
    assert Capacity((node("g", 16, gpus=1),)).fits(CATALOGUE["gpu-30"]) == 3


@given(clusters(), st.sampled_from(CONFIGS))
def test_fits_counts_what_take_can_place(cap: Capacity, config: HardwareConfig) -> None:
    for n in cap.nodes:
        k = n.fits(Demand.of(config))
        after = cap
        for _ in range(k):
            assert after.node(n.id) is not None
            after = after.take(n.id, config)
        left = after.node(n.id)
        assert left is not None and left.fits(Demand.of(config)) == 0
        assert left.free_cpus >= -1e-6 and left.free_gpus >= -1e-6 and left.free_memory_mb >= 0
    assert cap.fits(config) == sum(n.fits(Demand.of(config)) for n in cap.nodes)
    if cap.fits(config) > 0:
        assert cap.runnable(config)


@given(clusters(), st.sampled_from(CONFIGS), placements_st)
def test_place_picks_a_node_with_room_or_none(
    cap: Capacity, config: HardwareConfig, placed: list[Placement]
) -> None:
    chosen = cap.place(config, "f", placed)
    if cap.fits(config) == 0:
        assert chosen is None
        return
    assert chosen is not None
    target = cap.node(chosen)
    assert target is not None and target.fits(Demand.of(config)) >= 1
    # spread: no node with room holds fewer instances of the function
    count = {n.id: sum(1 for p in placed if p.node == n.id and p.function == "f") for n in cap.nodes}
    roomy = [n for n in cap.nodes if n.fits(Demand.of(config)) >= 1]
    assert count[chosen] == min(count[n.id] for n in roomy)


@given(clusters(), st.sampled_from([c for c in CONFIGS if c.kind.value == "cpu"]))
def test_best_fit_keeps_the_biggest_hole(cap: Capacity, config: HardwareConfig) -> None:
    """Among equally good nodes for spreading, a CPU config leaves the largest free block
    of cores as large as any other choice would: big configs still fit."""
    chosen = cap.place(config, "f", [])
    if chosen is None:
        return
    chosen_node = cap.node(chosen)
    assert chosen_node is not None
    peers = [
        n for n in cap.nodes if n.fits(Demand.of(config)) >= 1 and (n.gpus > 0) == (chosen_node.gpus > 0)
    ]

    def biggest_hole(after: Capacity) -> float:
        return max(n.free_cpus for n in after.nodes)

    best = biggest_hole(cap.take(chosen, config))
    assert all(best >= biggest_hole(cap.take(n.id, config)) - 1e-9 for n in peers)


def test_placement_spreads_then_packs() -> None:
    cap = Capacity((node("big", 8), node("small", 4), node("gpu", 8, gpus=1)))
    cpu2 = CATALOGUE["cpu-2"]
    first = cap.place(cpu2, "f", [])
    assert first == "small", "best fit: the 4-core node, so cpu-8 still fits on the 8-core one"
    assert cap.take("small", cpu2).place(CATALOGUE["cpu-8"], "g", []) == "big"
    second = cap.take("small", cpu2).place(cpu2, "f", [Placement("small", "f")])
    assert second == "big", "a second instance of f goes to another node"
    third = cap.place(cpu2, "f", [Placement("small", "f"), Placement("big", "f")])
    assert third == "gpu", "spreading wins over keeping CPU configs off the GPU node"
    assert cap.place(cpu2, "g", [Placement("small", "f")]) == "small", "other functions do not spread f"
    assert cap.place(CATALOGUE["gpu-20"], "f", []) == "gpu"
    assert cap.place(CATALOGUE["cpu-16"], "f", []) is None


def test_gpu_configs_fill_one_gpu_before_the_next() -> None:
    cap = Capacity((node("g1", 16, gpus=1), node("g2", 16, gpus=1)))
    cap = cap.take("g1", CATALOGUE["gpu-50"])
    assert cap.place(CATALOGUE["gpu-30"], "h", []) == "g1", "best fit on the GPU share"
    assert cap.place(CATALOGUE["gpu-70"], "h", []) == "g2"


def test_reserve_counts_what_the_cluster_has_not_seen_yet() -> None:
    cap = Capacity((node("a", 8), node("b", 8, free_cpus=2)))
    held = {"a": [Demand.of(CATALOGUE["cpu-4"])], "b": [Demand.of(CATALOGUE["cpu-4"])]}
    after = reserve(cap, held)
    a, b = after.node("a"), after.node("b")
    assert a is not None and a.free_cpus == 4, "the start the cluster has not counted yet"
    assert b is not None and b.free_cpus == 2, "the cluster's own view when it sees more in use"


def test_describe_and_parse_cluster() -> None:
    cap = describe(DEFAULT_CLUSTER)
    assert [n.id for n in cap.nodes] == ["cpu32-0", "cpu16-0", "cpu16-1", "gpu-0"]
    assert sum(n.gpus for n in cap.nodes) == 1
    doc = {
        "nodes": [
            {"name": "c", "cpus": 4, "memory_mb": 8192, "count": 2},
            {"name": "g", "cpus": 2, "memory_mb": 8192, "gpus": 1},
        ]
    }
    assert parse_cluster(doc) == (NodeShape("c", 4, 8192, 0, 2), NodeShape("g", 2, 8192, 1, 1))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "nodes must be a non-empty list"),
        ({"nodes": [{"name": "c", "memory_mb": 1}]}, "nodes[0].cpus is missing"),
        ({"nodes": [{"name": "c", "cpus": "many", "memory_mb": 1}]}, "nodes[0]"),
        ({"nodes": [{"name": "c", "cpus": 0, "memory_mb": 1}]}, "nodes[0].cpus must be positive"),
        ({"nodes": [{"name": "c", "cpus": 1, "memory_mb": 1, "gpus": -1}]}, "nodes[0].gpus"),
        ({"nodes": [{"name": "c", "cpus": 1, "memory_mb": 1}] * 2}, "nodes[1].name: duplicate"),
        ({"nodes": ["c"]}, "nodes[0] must be a mapping"),
    ],
)
def test_bad_cluster_descriptions_name_the_field(doc: object, message: str) -> None:
    with pytest.raises(ClusterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_cluster(doc)


def test_host_capacity_takes_off_what_the_backend_runs() -> None:
    import os

    from smiless.backends.base import host_capacity

    cap = host_capacity([Demand.of(CATALOGUE["cpu-1"])], gpus=0)
    (host,) = cap.nodes
    assert host.cpus == (os.cpu_count() or 1) and host.free_cpus == host.cpus - 1
    assert host.free_memory_mb == host.memory_mb - 4096
    assert not cap.runnable(CATALOGUE["gpu-10"])


def test_docker_demand_labels_of_an_adopted_container() -> None:
    from smiless.backends.docker import _demand

    labels = {"io.smiless.cpus": "2", "io.smiless.gpus": "0.3", "io.smiless.memory_mb": "4096"}
    assert _demand(labels) == Demand(2, 0.3, 4096)
    assert _demand({}) == Demand(0, 0, 0), "an older run's container: nothing known"
