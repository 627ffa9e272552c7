from __future__ import annotations

import json

import pytest

from smiless.bench.optimizer import (
    bench_autoscaler,
    bench_optimizer,
    configs_for,
    exhaustive_ms,
    main,
    summarize,
)
from smiless.policy.costmodel import Forecast
from smiless.policy.profile import load_reference_profiles
from smiless.policy.search import build_problem, exact_plan

FIELDS = {
    "n_functions",
    "m_configs",
    "fast_ms",
    "exact_ms",
    "speedup",
    "cost_gap",
    "fast_feasible",
    "exact_feasible",
}


def test_optimizer_rows_have_the_issue_fields() -> None:
    rows = bench_optimizer(seed=3, repeats=1, lengths=(3, 5), m_configs=(2, 16))
    assert len(rows) == 2 * 2 * 2 * 5  # shapes x lengths x M x SLAs
    for r in rows:
        assert set(r) >= FIELDS
        assert r["m_configs"] in (2, 16) and r["n_functions"] in (3, 5)
        assert r["fast_feasible"] == r["exact_feasible"]
        if r["cost_gap"] is not None:
            assert r["cost_gap"] >= -1e-9  # the exact plan is never dearer
        # the ratio of the printed times, itself printed to two decimals
        assert r["build_ms"] > 0 and r["speedup_ceiling"] == pytest.approx(
            r["exact_ms"] / r["build_ms"], rel=0.02, abs=0.005
        )
    assert summarize(rows)


def test_same_seed_same_cases() -> None:
    a = bench_optimizer(seed=7, repeats=1, lengths=(4,), m_configs=(8,), with_plain=False)
    b = bench_optimizer(seed=7, repeats=1, lengths=(4,), m_configs=(8,), with_plain=False)
    strip = [{k: v for k, v in r.items() if not k.endswith(("_ms", "speedup", "_ceiling"))} for r in a]
    assert strip == [
        {k: v for k, v in r.items() if not k.endswith(("_ms", "speedup", "_ceiling"))} for r in b
    ]


def test_config_subsets() -> None:
    assert list(configs_for(2)) == ["cpu-1", "gpu-10"]
    assert len(configs_for(8)) == 8 and len(configs_for(16)) == 16
    with pytest.raises(ValueError):
        configs_for(5)


def test_autoscaler_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_autoscaler(gs=(1, 1000), repeats=20)
    assert [(r["kind"], r["g"]) for r in rows] == [("cpu", 1), ("cpu", 1000), ("gpu", 1), ("gpu", 1000)]
    assert all(r["us"] > 0 and r["instances"] * r["batch"] >= r["g"] for r in rows)
    assert main(["autoscaler"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {r["g"] for r in printed} >= {1, 1000}


def test_exhaustive_search_finds_the_exact_optimum_and_extrapolates_past_its_cap() -> None:
    ref = load_reference_profiles()
    fns = {"a": "imagerecognition", "b": "distilbert", "c": "questionanswering", "d": "translation"}
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    profiles = {f: ref[m] for f, m in fns.items()}
    cat = configs_for(8)
    fc = Forecast(it_s=7.0)
    p = build_problem(list(fns), edges, 3.0, profiles, cat, fc)
    ms, combos, best = exhaustive_ms(p, max_combos=10**9)
    assert combos == len(p.lats[0]) * len(p.lats[1]) * len(p.lats[2]) * len(p.lats[3]) > 1
    assert ms > 0
    exact = exact_plan(list(fns), edges, 3.0, profiles, cat, fc)
    assert exact.feasible and best == pytest.approx(exact.cost)
    capped_ms, capped_combos, _ = exhaustive_ms(p, max_combos=2)
    assert capped_combos == combos and capped_ms > 0, "extrapolated to every combination"
