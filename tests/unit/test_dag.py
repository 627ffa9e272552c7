from __future__ import annotations

import pytest

from smiless.dag import Dag, DagError

VOICE_EDGES = [("sr", "tm"), ("sr", "ner"), ("tm", "tg"), ("ner", "tg"), ("tg", "tts")]


def test_topological_order_and_neighbours() -> None:
    d = Dag.of(["tts", "tg", "sr", "ner", "tm"], VOICE_EDGES)
    assert d.functions[0] == "sr" and d.functions[-1] == "tts"
    assert d.parents["tg"] == ("tm", "ner") and d.children["sr"] == ("tm", "ner")
    assert d.roots == ("sr",) and d.leaves == ("tts",)
    assert not d.is_chain


def test_order_respects_every_edge_and_keeps_the_given_order_among_ready_functions() -> None:
    d = Dag.of(["c", "b", "a", "z"], [("a", "z"), ("c", "z")])
    assert d.functions == ("c", "b", "a", "z")
    assert d.roots == ("c", "b", "a") and d.leaves == ("b", "z")


@pytest.mark.parametrize(
    ("functions", "edges", "field", "match"),
    [
        ([], [], "functions", "at least one"),
        (["a", "a"], [], "functions[1]", "duplicate function 'a'"),
        (["a"], [("a", "b")], "edges[0].target", "unknown function 'b'"),
        (["a", "b"], [("a", "b"), ("x", "b")], "edges[1].source", "unknown function 'x'"),
        (["a"], [("a", "a")], "edges[0]", "self-loop on 'a'"),
        (["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")], "edges", "cycle a -> b -> c -> a"),
    ],
)
def test_invalid_dags_are_refused_naming_the_field(
    functions: list[str], edges: list[tuple[str, str]], field: str, match: str
) -> None:
    with pytest.raises(DagError, match=match) as info:
        Dag.of(functions, edges)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


def test_a_repeated_edge_is_merged_unless_refused() -> None:
    edges = [("a", "b"), ("b", "c"), ("a", "b")]
    d = Dag.of(["a", "b", "c"], edges)
    assert d.edges == (("a", "b"), ("b", "c")) and d.parents["b"] == ("a",)
    assert d.is_chain
    with pytest.raises(DagError, match="duplicate edge a -> b") as info:
        Dag.of(["a", "b", "c"], edges, merge_duplicates=False)
    assert info.value.field == "edges[2]"


def test_a_chain_is_one_path_and_a_join_is_not() -> None:
    assert Dag.of(["x"], []).is_chain
    assert Dag.of(["a", "b", "c"], [("a", "b"), ("b", "c")]).is_chain
    assert not Dag.of(["a", "b", "c"], [("a", "c"), ("b", "c")]).is_chain
