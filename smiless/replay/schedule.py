"""Schedule building (pure): a trace row and a window of trace minutes become a workload
(`smiless.sim.workload.Workload`, the simulator's type) and its invocations send times. One
trace minute = one slot of `slot_seconds` of wall time (2 s, as the reference's load
generator). Within a slot the invocations go out together (a burst, the reference) or
spread as a Poisson process (`smiless.trace.arrivals_from_counts` does both)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smiless.sim.workload import Workload
from smiless.trace import Spread, Trace, TraceFunction, arrivals_from_counts


def select_row(trace: Trace, row: str) -> TraceFunction:
    """A row by HashFunction or by its 0-based index in the file; KeyError says which."""
    if row.isdigit():
        i = int(row)
        if i >= len(trace):
            raise KeyError(f"row index {i} is not below the trace's {len(trace)} rows")
        return trace.functions[i]
    try:
        return trace.function(row)
    except KeyError:
        raise KeyError(f"no row with HashFunction {row!r} (nor is it an index)") from None


def make_workload(app: str, fn: TraceFunction, start_minute: int, minutes: int | None) -> Workload:
    """The window [start_minute, start_minute + minutes) of a row (to its end when minutes is
    None), the minutes before it as the workload's history."""
    total = len(fn.counts)
    if not 0 <= start_minute < total:
        raise ValueError(f"start_minute: {start_minute} is outside the trace's 0..{total - 1}")
    end = total if minutes is None else start_minute + minutes
    if minutes is not None and minutes < 1:
        raise ValueError(f"minutes: {minutes} is not positive")
    if end > total:
        raise ValueError(f"minutes: the window ends at minute {end}, past the trace's {total}")
    counts = np.asarray(fn.counts[:end], dtype=np.int64)
    return Workload(counts, start_minute, source=fn.hash_function, app=app)


@dataclass(frozen=True, order=True)
class Send:
    """One scheduled invocation; `at` is seconds after the replay's start."""

    at: float
    app: str
    slot: int  # index of its trace minute within the window
    seq: int = 0  # position in the whole schedule (request ids, tie order)


def build_schedule(
    workloads: Sequence[Workload], slot_seconds: float, spread: Spread = "together", seed: int = 0
) -> tuple[Send, ...]:
    """Every workload's invocations as sends, merged in time order.

    Slot i of a window starts at i·slot_seconds. "together": all of slot i's invocations are
    due at its start; "poisson": uniformly inside it (seed + the workload's position seeds
    each app, so adding an app does not move another app's sends).

    Example: counts (2, 0, 1), slot 2 s, together -> sends at 0.0, 0.0, 4.0 in slots 0, 0, 2.
    """
    if not slot_seconds > 0:
        raise ValueError(f"slot_seconds: must be positive, got {slot_seconds}")
    sends: list[Send] = []
    for k, w in enumerate(workloads):
        times = arrivals_from_counts(w.window, slot_seconds, spread=spread, seed=seed + k)
        last = max(0, w.minutes - 1)
        for t in times:
            slot = min(last, math.floor(float(t) / slot_seconds))
            sends.append(Send(float(t), w.app, slot))
    order = sorted(sends, key=lambda s: (s.at, s.app))
    return tuple(Send(s.at, s.app, s.slot, i) for i, s in enumerate(order))


def window_seconds(workloads: Sequence[Workload], slot_seconds: float) -> float:
    """Wall-clock length of the replay window: the longest workload's minutes × slot."""
    return max((w.minutes for w in workloads), default=0) * slot_seconds
