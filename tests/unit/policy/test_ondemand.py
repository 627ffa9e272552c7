"""The on-demand start rule that the optimizer's EnsureInstance and the simulator share."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smiless.policy.ondemand import on_demand_count, on_demand_shape


def test_the_count_is_what_the_coming_round_leaves_in_batches() -> None:
    assert on_demand_count(queued=1, coming=0, batch=4) == 1
    assert on_demand_count(queued=9, coming=0, batch=4) == 3
    assert on_demand_count(queued=9, coming=4, batch=4) == 2
    assert on_demand_count(queued=3, coming=4, batch=4) == 0
    assert on_demand_count(queued=2, coming=0, batch=0) == 2  # an unknown batch serves one


@given(st.integers(0, 200), st.integers(0, 200), st.integers(0, 16))
def test_the_count_covers_the_queue_with_no_instance_to_spare(queued: int, coming: int, batch: int) -> None:
    n = on_demand_count(queued, coming, batch)
    b = max(1, batch)
    assert coming + n * b >= queued
    assert n == 0 or coming + (n - 1) * b < queued


def test_the_shape_is_the_plans_unless_this_host_cannot_run_it() -> None:
    assert on_demand_shape("cpu-4", "cpu-1", 4) == ("cpu-4", 4)
    assert on_demand_shape("cpu-4", "cpu-1", 4, lambda n: n != "cpu-4") == ("cpu-1", 1)
    assert on_demand_shape("", "cpu-1", 3, lambda n: True) == ("cpu-1", 3)  # no instance config
    assert on_demand_shape("gpu-1", "gpu-1", 2, lambda n: False) is None
