"""Workloads: arrivals from counts, the documented row selection, the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

from smiless.bench.policies import standard_workloads
from smiless.sim import REFERENCE_APPS
from smiless.sim.workload import Workload, eligible, it_cv, select_rows, synthetic_counts
from smiless.trace import DEFAULT_TRACE, load_trace


def test_together_and_poisson_keep_every_invocation_in_its_minute() -> None:
    c = np.array([0, 3, 0, 0, 2, 1], dtype=np.int64)
    together = Workload(c, 1, 2.0, "together").arrival_groups()
    assert together == [(0.0, 1, 3), (6.0, 4, 2), (8.0, 5, 1)]
    poisson = Workload(c, 1, 2.0, "poisson", seed=3).arrival_groups()
    assert len(poisson) == 6 and all(n == 1 for _, _, n in poisson)
    for t, minute, _ in poisson:
        assert Workload(c, 1).time_of(minute) <= t < Workload(c, 1).time_of(minute) + 2.0
    assert [t for t, _, _ in poisson] == sorted(t for t, _, _ in poisson)


def test_the_benchmark_rows_follow_the_rule() -> None:
    tr = load_trace(DEFAULT_TRACE)
    rows = select_rows(tr)
    assert rows == select_rows(tr)
    assert all(eligible(r) for r in rows)
    cvs = [it_cv(r.counts) for r in rows]
    assert cvs == sorted(cvs) and cvs[0] < cvs[-1]


def test_synthetic_rows_follow_rate_and_burstiness() -> None:
    rows = synthetic_counts(300, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(rows, synthetic_counts(300, seed=4), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(rows, synthetic_counts(300, seed=5), strict=True))
    rates = np.array([r.sum() / r.size for r in rows])
    assert rates.max() <= 10.0 * 1.3  # clipped to 10 a minute (plus renewal noise)
    # the sample's median function is invoked less than once a minute
    assert 0.02 < float(np.median(rates)) < 1.0
    cvs = np.array([it_cv(r) for r in rows if r.sum() > 20])
    assert (cvs < 0.7).mean() > 0.1 and (cvs > 1.3).mean() > 0.1
    # the diurnal curve: afternoon busier than night over all apps together
    total = np.sum(rows, axis=0)
    assert total[15 * 60 : 16 * 60].sum() > total[2 * 60 : 3 * 60].sum()


def test_each_reference_app_keeps_its_row_whichever_apps_are_asked_for() -> None:
    """A part of the matrix (or another order) replays each app's own row, not the row at its
    position in the list: the rows used to be zipped with the apps asked for."""
    full = dict(standard_workloads(DEFAULT_TRACE))
    assert set(full) == set(REFERENCE_APPS)
    for name in reversed(REFERENCE_APPS):
        ((got, wl),) = standard_workloads(DEFAULT_TRACE, apps=[name])
        assert got == name and wl.source == full[name].source
        assert np.array_equal(wl.counts, full[name].counts)
    with pytest.raises(ValueError, match="apps: nope"):
        standard_workloads(DEFAULT_TRACE, apps=["nope"])
