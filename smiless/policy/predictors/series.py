"""Arrival history as the predictors see it: per-slot counts and the inter-arrival series.

Pure functions of their inputs. Time is a parameter (`start`, `end`), never read from a
clock, so the service, the simulator and the tests derive the same series from the same
arrivals.

Vocabulary (docs/design.md §2): a *slot* is the time unit of the history; an *arrival slot* is a
slot with at least one invocation; the *IT* (inter-arrival time) is the distance in slots
between two consecutive arrival slots, so it is always >= 1. Invocations that share a slot
are not an IT of 0: they are that arrival's *count*, which the count model predicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
CountsLike = Sequence[int] | npt.NDArray[np.integer]


def as_counts(counts: CountsLike) -> IntArray:
    """Validate and copy a per-slot count series into an int64 array.

    Raises ValueError for anything that is not a 1-D series of non-negative whole numbers:
    a predictor fitted on a negative count would learn nonsense silently.
    """
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"counts must be a 1-D series, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
            raise ValueError("counts must be whole numbers")
        if not np.all(arr == np.round(arr)):
            raise ValueError("counts must be whole numbers")
    out = arr.astype(np.int64)
    if np.any(out < 0):
        raise ValueError(f"counts must be non-negative (slot {int(np.argmax(out < 0))})")
    return out


def slot_counts(
    arrivals: Sequence[float] | npt.NDArray[np.floating],
    *,
    slot_s: float = 1.0,
    start: float | None = None,
    end: float | None = None,
) -> IntArray:
    """Count arrivals per slot of `slot_s` seconds over [start, end).

    `start` defaults to the first arrival and `end` to just after the last one. The service
    should pass `end=now`: the trailing empty slots are how long the app has been idle, which
    the predictors report as `elapsed_slots`. Arrivals outside [start, end) are ignored, so a
    range read from the store can be passed as it is.

    Example: arrivals [0.2, 0.7, 2.5] with slot_s=1 -> counts [2, 0, 1].
    """
    if not slot_s > 0 or not math.isfinite(slot_s):
        raise ValueError(f"slot_s must be a positive number of seconds, got {slot_s}")
    ts = np.asarray(arrivals, dtype=np.float64)
    if ts.ndim != 1:
        raise ValueError("arrivals must be a 1-D sequence of timestamps")
    if not np.all(np.isfinite(ts)):
        raise ValueError("arrivals must be finite timestamps")
    if start is None:
        if ts.size == 0:
            return np.zeros(0, dtype=np.int64)
        start = float(ts.min())
    if end is None:
        if ts.size == 0:
            return np.zeros(0, dtype=np.int64)
        # Up to the last arrival's slot, counted directly: recomputing it from an `end`
        # timestamp can round one slot too far.
        n_slots = max(0, math.floor((float(ts.max()) - start) / slot_s) + 1)
        inside = ts[ts >= start]
    else:
        if end < start:
            raise ValueError(f"end ({end}) is before start ({start})")
        n_slots = math.ceil((end - start) / slot_s)
        inside = ts[(ts >= start) & (ts < end)]
    idx = np.floor((inside - start) / slot_s).astype(np.int64)
    idx = idx[idx < n_slots]  # guards float rounding at the right edge
    return np.bincount(idx, minlength=n_slots).astype(np.int64)


@dataclass(frozen=True)
class SlotSeries:
    """A count history and what the predictors derive from it.

    `its[i]` is the distance in slots between arrival slot i and i+1; `arrival_counts[i+1]` is
    the count at the arrival that ends `its[i]` (so `arrival_counts` has one more element than
    `its`). `elapsed_slots` is how many slots have passed since the last arrival slot at the
    end of the history (0 when the last slot itself had arrivals).
    """

    counts: IntArray
    arrival_slots: IntArray
    arrival_counts: IntArray
    its: IntArray
    elapsed_slots: int

    @classmethod
    def from_counts(cls, counts: CountsLike) -> SlotSeries:
        c = as_counts(counts)
        slots = np.flatnonzero(c).astype(np.int64)
        its = np.diff(slots).astype(np.int64)
        elapsed = int(c.size - 1 - slots[-1]) if slots.size else int(c.size)
        return cls(counts=c, arrival_slots=slots, arrival_counts=c[slots], its=its, elapsed_slots=elapsed)

    @classmethod
    def from_arrivals(
        cls,
        arrivals: Sequence[float] | npt.NDArray[np.floating],
        *,
        slot_s: float = 1.0,
        start: float | None = None,
        end: float | None = None,
    ) -> SlotSeries:
        """Derive the series straight from arrival timestamps (seconds); see `slot_counts`."""
        return cls.from_counts(slot_counts(arrivals, slot_s=slot_s, start=start, end=end))

    @property
    def n_arrivals(self) -> int:
        """Number of arrival slots (not invocations)."""
        return int(self.arrival_slots.size)

    def idle_runs(self) -> IntArray:
        """Lengths of the empty-slot runs between consecutive arrival slots (IT - 1).

        Back-to-back arrival slots give a run of 0: with any keep-alive that next arrival finds
        the instance warm, so it belongs in the distribution. The run before the first arrival
        (unknown start) and the one still open at the end (censored) are left out.
        """
        return self.its - 1


def inter_arrivals(counts: CountsLike) -> IntArray:
    """The IT series (slots between consecutive arrival slots) of a count history."""
    return SlotSeries.from_counts(counts).its


BURST_SPAN_BURSTS = 32
"""How many recent bursts `burst_span` looks at."""
BURST_SPAN_MARGIN = 1.5


def burst_span(
    arrivals: Sequence[float] | npt.NDArray[np.floating], slot_s: float, bursts: int = BURST_SPAN_BURSTS
) -> float:
    """How long one arrival's requests take to come: the largest span, first to last, of the
    last `bursts` bursts of `arrivals` (ascending timestamps), a burst being the arrivals
    less than one slot before its last one, with half of it again as margin (the widest of a
    few bursts understates how long one can take), at most the slot. `slot_s` when there
    are no arrivals yet.

    The predictors count a slot's requests as one arrival; the controller holds an instance
    that has served until this long after a burst began, unless the predicted count has
    come. Requests that come at once (span 0) need no such wait; requests spread over the
    slot (span near `slot_s`) do."""
    if not slot_s > 0 or not math.isfinite(slot_s):
        raise ValueError(f"slot_s must be a positive number of seconds, got {slot_s}")
    i = len(arrivals) - 1
    if i < 0:
        return slot_s
    widest = 0.0
    for _ in range(bursts):
        last = arrivals[i]
        while i > 0 and arrivals[i - 1] > last - slot_s:
            i -= 1
        widest = max(widest, float(last - arrivals[i]))
        i -= 1
        if i < 0:
            break
    return min(slot_s, BURST_SPAN_MARGIN * widest)


def as_series(history: SlotSeries | CountsLike) -> SlotSeries:
    """Accept either a derived series or raw per-slot counts."""
    return history if isinstance(history, SlotSeries) else SlotSeries.from_counts(history)
