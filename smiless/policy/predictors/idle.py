"""Keep-alive from the idle-time distribution (reference §2.3).

The idle runs are the empty-slot gaps between consecutive arrival slots. Keeping an instance
alive long enough to cover the p-th percentile of them means about p % of next arrivals find
it warm; the tail beyond is cheaper to serve with a cold start (or a pre-warm) than to cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smiless.policy.predictors.series import CountsLike, SlotSeries, as_series


@dataclass(frozen=True)
class KeepAlive:
    """A keep-alive decision: `slots` to keep an idle instance after its last invocation."""

    slots: int
    samples: int
    fallback: bool
    reason: str = ""


@dataclass(frozen=True)
class IdleTimeDistribution:
    """keep-alive = the `percentile`-th percentile of idle runs, plus one slot.

    The +1: an idle run of t empty slots means the next arrival lands t + 1 slots after the
    last one, so an instance kept for t + 1 slots catches it. (This equals the percentile of
    the IT series; the reference multiplies the idle run itself by the slot length, which
    misses the arrivals that end the longest covered runs by up to one slot.)

    The percentile is the empirical one: the smallest t with P(idle <= t) >= p/100, so the
    answer is always an observed run, never an interpolation between two.

    With fewer than `min_runs` observed runs the distribution says nothing yet; keep-alive is
    then `default_slots` (10 minutes at the default 1 s slot, AWS Lambda's fixed keep-alive)
    or the longest run seen if that is longer, and the result is marked as a fallback.
    """

    percentile: float = 99.0
    min_runs: int = 5
    default_slots: int = 600

    def __post_init__(self) -> None:
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.min_runs < 1 or self.default_slots < 0:
            raise ValueError("min_runs must be >= 1 and default_slots >= 0")

    def keep_alive(self, history: SlotSeries | CountsLike) -> KeepAlive:
        runs = as_series(history).idle_runs()
        if runs.size < self.min_runs:
            longest = int(runs.max()) + 1 if runs.size else 0
            return KeepAlive(
                slots=max(self.default_slots, longest),
                samples=int(runs.size),
                fallback=True,
                reason=f"{runs.size} idle runs < {self.min_runs}: default keep-alive",
            )
        t = float(np.quantile(runs, self.percentile / 100.0, method="inverted_cdf"))
        return KeepAlive(slots=int(t) + 1, samples=int(runs.size), fallback=False)

    def to_dict(self) -> dict[str, Any]:
        return {"percentile": self.percentile, "min_runs": self.min_runs, "default_slots": self.default_slots}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IdleTimeDistribution:
        return cls(float(d["percentile"]), int(d["min_runs"]), int(d["default_slots"]))
