from __future__ import annotations

import pytest

from smiless.accounting import Lifetime, cost, instance_seconds, percentile, total_cost


def life(start: float, stop: float | None, price: float = 3.6) -> Lifetime:
    return Lifetime("i", "app", "f", "cpu-1", price, start, stop)


def test_lifetime_clipped_to_window() -> None:
    assert instance_seconds(life(10, 20), 0, 100, now=200) == 10
    assert instance_seconds(life(10, 20), 15, 100, now=200) == 5
    assert instance_seconds(life(10, None), 0, 100, now=50) == 40  # still running
    assert instance_seconds(life(10, 20), 30, 40, now=50) == 0


def test_cost_is_seconds_times_price() -> None:
    assert cost(life(0, 100, price=3.6), 0, 1000, now=1000) == pytest.approx(0.1)
    assert total_cost([life(0, 100), life(50, 150)], 0, 1000, now=1000) == pytest.approx(0.2)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
