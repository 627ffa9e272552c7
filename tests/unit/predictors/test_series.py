"""Per-slot counts and the IT series derived from arrival timestamps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smiless.policy.predictors import SlotSeries, burst_span, inter_arrivals, slot_counts


def test_slot_counts_example() -> None:
    assert slot_counts([0.2, 0.7, 2.5]).tolist() == [2, 0, 1]


def test_slot_counts_window_and_slot_length() -> None:
    # end=now keeps the trailing idle slots; arrivals outside [start, end) are ignored.
    counts = slot_counts([9.0, 10.0, 10.5, 13.9, 20.0], slot_s=2.0, start=10.0, end=16.0)
    assert counts.tolist() == [2, 1, 0]
    s = SlotSeries.from_arrivals([10.0, 10.5, 13.9], slot_s=2.0, start=10.0, end=16.0)
    assert s.elapsed_slots == 1 and s.its.tolist() == [1]


def test_slot_counts_rejects_bad_slot() -> None:
    with pytest.raises(ValueError, match="slot_s"):
        slot_counts([1.0], slot_s=0.0)
    with pytest.raises(ValueError, match="before start"):
        slot_counts([1.0], start=5.0, end=1.0)


def test_series_fields() -> None:
    s = SlotSeries.from_counts([0, 3, 0, 0, 1, 2, 0])
    assert s.arrival_slots.tolist() == [1, 4, 5]
    assert s.its.tolist() == [3, 1]
    assert s.arrival_counts.tolist() == [3, 1, 2]
    assert s.elapsed_slots == 1
    assert s.idle_runs().tolist() == [2, 0]
    assert inter_arrivals([1, 1, 0, 1]).tolist() == [1, 2]


def test_empty_and_bad_counts() -> None:
    s = SlotSeries.from_counts([0, 0, 0])
    assert s.n_arrivals == 0 and s.its.size == 0 and s.elapsed_slots == 3
    with pytest.raises(ValueError, match="non-negative"):
        SlotSeries.from_counts([1, -1])
    with pytest.raises(ValueError, match="whole"):
        SlotSeries.from_counts(np.array([1.5]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=500.0, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([0.5, 1.0, 3.0]),
)
def test_counts_conserve_arrivals(ts: list[float], slot_s: float) -> None:
    counts = slot_counts(ts, slot_s=slot_s)
    assert int(counts.sum()) == len(ts)
    s = SlotSeries.from_counts(counts)
    # ITs add up to the distance between the first and the last arrival slot.
    assert int(s.its.sum()) == int(s.arrival_slots[-1] - s.arrival_slots[0])
    assert s.elapsed_slots == 0
    assert np.all(s.its >= 1)


def test_burst_span_measures_how_spread_recent_bursts_are() -> None:
    assert burst_span([], 2.0) == 2.0  # nothing seen: a burst may take the whole slot
    assert burst_span([10.0, 10.0, 10.0, 12.0, 12.0], 2.0) == 0.0  # requests that come at once
    # spread bursts: the widest, with half again as margin, never beyond the slot
    assert burst_span([0.0, 0.4, 4.0, 4.2], 2.0) == pytest.approx(0.6)
    assert burst_span([0.0, 1.5, 1.9, 4.0], 2.0) == 2.0
    # only the last `bursts` bursts count: an old wide burst is forgotten
    old_wide = [0.0, 1.9] + [10.0 + 3 * k for k in range(5)]
    assert burst_span(old_wide, 2.0, bursts=5) == 0.0
    assert burst_span(old_wide, 2.0, bursts=6) == 2.0
    with pytest.raises(ValueError, match="slot_s"):
        burst_span([1.0], 0.0)
