"""The standard matrix's two row sets: the held-out rows are apart from the tuning rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from smiless.bench.policies import plot, run_matrix, standard_workloads, summarize
from smiless.sim import LOWER_BOUND, REFERENCE_APPS
from smiless.sim.workload import eligible, held_out_rows, it_cv, select_rows
from smiless.trace import DEFAULT_TRACE, Trace, load_trace


@pytest.fixture(scope="module")
def trace() -> Trace:
    return load_trace(DEFAULT_TRACE)


def test_held_out_rows_are_eligible_distinct_and_never_tuning_rows(trace: Trace) -> None:
    tuning = select_rows(trace)
    held = held_out_rows(trace)
    flat = [r for pair in held for r in pair]
    assert len(flat) == 2 * len(tuning) == len({r.hash_function for r in flat})
    assert not {r.hash_function for r in flat} & {r.hash_function for r in tuning}
    # a row with another name but the same series is not held out: the sample has such twins
    series = [r.counts.tobytes() for r in (*flat, *tuning)]
    assert len(set(series)) == len(series)
    assert all(eligible(r) for r in flat)
    # each tuning row sits between its two held-out rows in IT variability: the same kind of traffic
    for (below, above), mid in zip(held, tuning, strict=True):
        assert it_cv(below.counts) <= it_cv(mid.counts) <= it_cv(above.counts)


def test_standard_workloads_give_two_held_out_rows_per_app(trace: Trace) -> None:
    got = standard_workloads(DEFAULT_TRACE, row_set="held-out")
    assert [name for name, _ in got] == [a for a in REFERENCE_APPS for _ in range(2)]
    tuning_sources = {wl.source for _, wl in standard_workloads(DEFAULT_TRACE)}
    assert not {wl.source for _, wl in got} & tuning_sources


def test_too_few_eligible_rows_for_a_held_out_set_is_an_error(trace: Trace) -> None:
    few = Trace(tuple(r for r in trace if eligible(r))[:4], trace.minutes)
    with pytest.raises(ValueError, match="held-out"):
        held_out_rows(few)


def test_a_held_out_only_matrix_runs_and_plots_per_row(tmp_path: Path) -> None:
    m = run_matrix(
        DEFAULT_TRACE,
        apps=["image-query"],
        slas=[4.0],
        policies=["keepalive-10min", LOWER_BOUND],
        row_sets=["held-out"],
    )
    assert {r.row_set for r in m.rows} == {"held-out"}
    assert len({r.trace_row for r in m.rows}) == 2 and not m.curves
    assert {(s["row_set"], s["trace_row"]) for s in summarize(m.rows)} <= {
        ("held-out", r.trace_row) for r in m.rows
    }
    paths = plot(m, tmp_path)
    assert sorted(p.name for p in paths) == [
        "held-out_cost_normalised.png",
        "held-out_violation_ratio.png",
    ]
