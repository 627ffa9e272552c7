from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smiless.dag import Dag
from smiless.policy.workflow import all_paths, decompose, path_latency, timing

from .helpers import dags, is_path

VOICE = (
    ["sr", "tm", "ner", "tg", "tts"],
    [("sr", "tm"), ("sr", "ner"), ("tm", "tg"), ("ner", "tg"), ("tg", "tts")],
)
AMBER = (
    ["od", "hap", "fr", "ir", "tr"],
    [("od", "hap"), ("hap", "fr"), ("fr", "ir"), ("od", "ir"), ("ir", "tr")],
)


def test_voice_assistant_decomposes_into_both_diamond_paths() -> None:
    d = Dag.of(*VOICE)
    assert decompose(d) == [("sr", "tm", "tg", "tts"), ("sr", "ner", "tg", "tts")]


def test_skip_edge_is_covered_by_the_long_path() -> None:
    d = Dag.of(*AMBER)
    paths = decompose(d)
    assert paths == [("od", "hap", "fr", "ir", "tr")]  # od -> ir is an edge no function needs


def test_several_roots_and_leaves_are_all_covered() -> None:
    """The reference keeps only the last (root, leaf) pair's paths here and loses functions."""
    d = Dag.of(["r1", "r2", "m", "l1", "l2", "alone"], [("r1", "m"), ("r2", "m"), ("m", "l1"), ("m", "l2")])
    paths = decompose(d)
    assert {f for p in paths for f in p} == set(d.functions)
    assert ("alone",) in paths
    assert all(is_path(d, p) for p in paths)


def test_weights_pick_the_critical_path_first() -> None:
    d = Dag.of(*VOICE)
    w = {"sr": 1.0, "tm": 0.1, "ner": 2.0, "tg": 1.0, "tts": 1.0}
    assert decompose(d, w)[0] == ("sr", "ner", "tg", "tts")


@given(dags(max_n=9))
def test_decomposition_covers_every_function_with_real_paths(
    shape: tuple[list[str], list[tuple[str, str]]],
) -> None:
    d = Dag.of(*shape)
    rng = random.Random(len(shape[1]))
    weight = {f: rng.uniform(0.1, 2.0) for f in d.functions}
    for w in (None, weight):
        paths = decompose(d, w)
        assert {f for p in paths for f in p} == set(d.functions)
        assert all(is_path(d, p) for p in paths)
        assert len(paths) == len(set(paths)) <= len(d.functions)


@given(dags(max_n=8), st.randoms(use_true_random=False))
def test_timing_matches_every_path(
    shape: tuple[list[str], list[tuple[str, str]]], rng: random.Random
) -> None:
    d = Dag.of(*shape)
    lat = {f: rng.uniform(0.0, 3.0) for f in d.functions}
    t = timing(d, lat)
    paths = list(all_paths(d))
    assert t.latency_s == pytest.approx(max(path_latency(p, lat) for p in paths))
    assert is_path(d, t.critical_path)
    assert path_latency(t.critical_path, lat) == pytest.approx(t.latency_s)
    for f in d.functions:
        through = [path_latency(p, lat) for p in paths if f in p]
        assert t.through(f, lat[f]) == pytest.approx(max(through))
        before = [path_latency(p[: p.index(f)], lat) for p in paths if f in p]
        assert t.ready_offset[f] == pytest.approx(max(before)), "the longest way in from a root"
