from __future__ import annotations

from pathlib import Path

import pytest

from smiless import appspec
from smiless.appspec import AppSpec, AppSpecError, FunctionSpec

F = FunctionSpec


def spec(
    functions: list[tuple[str, str]], edges: list[tuple[str, str]], sla: float = 2.0, name: str = "app"
) -> AppSpec:
    return AppSpec(name, sla, tuple(F(n, m) for n, m in functions), tuple(edges))


CHAIN = [("a", "distilbert"), ("b", "questionanswering")]

# Each malformed spec and the field its error must name.
MALFORMED: list[tuple[str, AppSpec, str]] = [
    (
        "cycle",
        spec(
            [("a", "translation"), ("b", "translation"), ("c", "translation")],
            [("a", "b"), ("b", "c"), ("c", "b")],
        ),
        "edges",
    ),
    ("unknown edge source", spec(CHAIN, [("x", "b")]), "edges[0].source"),
    ("unknown edge target", spec(CHAIN, [("a", "y")]), "edges[0].target"),
    ("duplicate name", spec([("a", "translation"), ("a", "translation")], []), "functions[1].name"),
    ("no root", spec([("a", "translation"), ("b", "translation")], [("a", "b"), ("b", "a")]), "edges"),
    (
        "several roots",
        spec([("a", "translation"), ("b", "translation"), ("c", "translation")], [("a", "c"), ("b", "c")]),
        "edges",
    ),
    ("zero sla", spec(CHAIN, [("a", "b")], sla=0.0), "sla"),
    ("negative sla", spec(CHAIN, [("a", "b")], sla=-1.0), "sla"),
    ("unknown model", spec([("a", "resnet-9000")], []), "functions[0].model"),
    ("unreadable torchscript", spec([("a", "torchscript:/nonexistent/m.pt")], []), "functions[0].model"),
    ("relative torchscript", spec([("a", "torchscript:m.pt")], []), "functions[0].model"),
    ("self loop", spec([("a", "translation")], [("a", "a")]), "edges[0]"),
    ("duplicate edge", spec(CHAIN, [("a", "b"), ("a", "b")]), "edges[1]"),
    ("bad app name", spec(CHAIN, [("a", "b")], name="Bad Name"), "name"),
    ("no functions", spec([], []), "functions"),
    (
        "incompatible edge",
        spec([("a", "speechrecognition"), ("b", "objectdetection")], [("a", "b")]),
        "functions[1]",
    ),
]


@pytest.mark.parametrize(("case", "bad", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_names_field(case: str, bad: AppSpec, field: str) -> None:
    with pytest.raises(AppSpecError) as info:
        appspec.validate(bad)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_cycle_message_shows_the_cycle() -> None:
    bad = spec(
        [("a", "translation"), ("b", "translation"), ("c", "translation")],
        [("a", "b"), ("b", "c"), ("c", "b")],
    )
    with pytest.raises(AppSpecError, match="b -> c -> b"):
        appspec.validate(bad)


@pytest.mark.parametrize("path", appspec.example_paths(), ids=lambda p: p.stem)
def test_examples_are_valid_and_round_trip(path: Path) -> None:
    s = appspec.load_file(path)
    again = appspec.validate(appspec.from_proto(appspec.to_proto(s)))
    assert again == s
    assert appspec.validate(appspec.from_dict(appspec.to_dict(s))) == s
    assert s.topological_order()[0] == s.entry


def test_three_reference_apps_ship() -> None:
    names = {appspec.load_file(p).name for p in appspec.example_paths()}
    assert names == {"voice-assistant", "amber-alert", "image-query"}


def test_diamond_order_respects_edges() -> None:
    s = appspec.load_file(appspec.EXAMPLES_DIR / "voice-assistant.yaml")
    order = s.topological_order()
    for a, b in s.edges:
        assert order.index(a) < order.index(b)
    assert s.parents("tg") == ["tm", "ner"]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([1, 2], "(root)"),
        ({"sla": 1, "functions": []}, "name"),
        ({"name": "a", "functions": []}, "sla"),
        ({"name": "a", "sla": "fast", "functions": []}, "sla"),
        ({"name": "a", "sla": 1, "functions": "x"}, "functions"),
        ({"name": "a", "sla": 1, "functions": [{"name": "a"}]}, "functions[0]"),
        ({"name": "a", "sla": 1, "functions": [], "edges": [["a"]]}, "edges[0]"),
        ({"name": "a", "sla": 1, "functions": [], "colour": "red"}, "colour"),
    ],
)
def test_file_format_errors(doc: object, field: str) -> None:
    with pytest.raises(AppSpecError) as info:
        appspec.from_dict(doc)
    assert info.value.field == field


@pytest.mark.parametrize(("value", "seconds"), [(4, 4.0), ("4s", 4.0), ("500ms", 0.5), (2.5, 2.5)])
def test_sla_durations(value: object, seconds: float) -> None:
    doc = {"name": "a", "sla": value, "functions": [{"name": "x", "model": "tiny-mlp"}]}
    assert appspec.from_dict(doc).sla_s == seconds


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(AppSpecError, match="cannot read"):
        appspec.load_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(AppSpecError, match="not valid YAML"):
        appspec.load_file(bad)
