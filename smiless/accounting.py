"""Cost and SLA accounting (docs/design.md §5): the one cost function.

Cost of an instance = its lifetime, from the start command to the stop (or `now` while
it runs), clipped to the report window, times its config's unit price. Idle and init
time count. The gateway's reports, the tests and the simulator all use this code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Lifetime:
    instance_id: str
    app: str
    function: str
    config: str
    price_per_hour: float
    start: float  # epoch seconds of the start command
    stop: float | None  # None while running


class RecordedInstance(Protocol):
    """What a recorded instance (`common.Instance` in `Store.lifetimes()`) offers accounting."""

    id: str
    app: str
    function: str
    config: str
    price_per_hour: float

    @property
    def started_at(self) -> _Nanos: ...

    @property
    def stopped_at(self) -> _Nanos: ...

    def HasField(self, field_name: Any) -> bool: ...


class _Nanos(Protocol):
    def ToNanoseconds(self) -> int: ...


def lifetime_of(inst: RecordedInstance) -> Lifetime:
    """The accounting view of a recorded instance: start command to stop (None while it runs)."""
    stop = inst.stopped_at.ToNanoseconds() / 1e9 if inst.HasField("stopped_at") else None
    return Lifetime(
        inst.id,
        inst.app,
        inst.function,
        inst.config,
        inst.price_per_hour,
        inst.started_at.ToNanoseconds() / 1e9,
        stop,
    )


def instance_seconds(life: Lifetime, window_start: float, window_end: float, now: float) -> float:
    stop = life.stop if life.stop is not None else now
    return max(0.0, min(stop, window_end) - max(life.start, window_start))


def cost(life: Lifetime, window_start: float, window_end: float, now: float) -> float:
    return instance_seconds(life, window_start, window_end, now) * life.price_per_hour / 3600.0


def total_cost(lives: Iterable[Lifetime], window_start: float, window_end: float, now: float) -> float:
    return sum(cost(x, window_start, window_end, now) for x in lives)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]
