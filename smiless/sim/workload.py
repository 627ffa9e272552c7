"""Workloads: an app's per-minute invocation counts and how they become arrivals.

A workload is one trace row (or a synthetic one) for one app: the minutes before
`start_minute` are history (the predictors train on them and the policies see them as the
app's past), the minutes from `start_minute` on are simulated. One trace minute becomes
`slot_s` seconds of simulated time (default 2 s, as the reference evaluation compresses it),
and the predictors' slot is that compressed minute.

Azure rows (`select_rows`, the tuning set, and `held_out_rows`) follow a documented rule; the
synthetic generator (`synthetic_counts`) follows the statistics measured on the 1,250-function
sample.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from smiless.trace import Spread, Trace, TraceFunction, arrivals_from_counts

DEFAULT_SLOT_S = 2.0
"""Seconds of simulated time per trace minute (the reference's interval_time_unit)."""


@dataclass(frozen=True, eq=False)
class Workload:
    """One app's invocations. `counts` covers history and simulated part alike. The one
    workload type: the simulator drives an app with it and `smiless replay` drives a running
    stack with it (its minutes from `start_minute` on are the replayed window)."""

    counts: npt.NDArray[np.int64]
    start_minute: int
    slot_s: float = DEFAULT_SLOT_S
    spread: Spread = "together"
    seed: int = 0
    source: str = ""
    """Where the counts came from (a HashFunction, or "synthetic:<i>")."""
    app: str = ""
    """The app it drives (the replay's key; the simulator pairs workloads with apps itself)."""
    _groups: list[tuple[float, int, int]] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < len(self.counts):
            raise ValueError(f"start_minute must be in [0, {len(self.counts)}), got {self.start_minute}")
        if not self.slot_s > 0:
            raise ValueError(f"slot_s must be positive, got {self.slot_s}")

    @property
    def minutes(self) -> int:
        """Simulated minutes (slots)."""
        return len(self.counts) - self.start_minute

    @property
    def window(self) -> npt.NDArray[np.int64]:
        """The counts of the simulated (replayed) minutes, without the history."""
        return self.counts[self.start_minute :]

    @property
    def duration_s(self) -> float:
        return self.minutes * self.slot_s

    @property
    def invocations(self) -> int:
        return int(self.window.sum())

    def slot_of(self, t: float) -> int:
        """Trace minute (absolute index into `counts`) that simulated time `t` falls in."""
        return self.start_minute + int(t // self.slot_s)

    def time_of(self, minute: int) -> float:
        """Simulated time at which trace minute `minute` begins (negative in the history)."""
        return (minute - self.start_minute) * self.slot_s

    def arrival_groups(self) -> list[tuple[float, int, int]]:
        """(time, trace minute, invocations) of every arrival, in time order.

        "together": one group per active minute, all its invocations at the minute's start (the
        reference's load generator). "poisson": each invocation alone, uniform in its minute
        (a Poisson process given the count), seeded by `seed`."""
        if self._groups:
            return self._groups
        sim = self.window
        out: list[tuple[float, int, int]] = []
        if self.spread == "together":
            for i in np.flatnonzero(sim):
                out.append((float(i) * self.slot_s, self.start_minute + int(i), int(sim[i])))
        else:
            times = arrivals_from_counts(sim, self.slot_s, spread=self.spread, seed=self.seed)
            for t in times.tolist():
                out.append((t, self.slot_of(t), 1))
        self._groups.extend(out)
        return out


# --- Azure rows -----------------------------------------------------------------------------


def it_cv(counts: npt.NDArray[np.integer]) -> float:
    """Coefficient of variation of the inter-arrival times (in minutes) of a count row."""
    active = np.flatnonzero(counts)
    if active.size < 3:
        return math.inf
    its = np.diff(active).astype(np.float64)
    return float(its.std() / its.mean())


def eligible(row: TraceFunction, *, max_it: int = 30, active: tuple[float, float] = (0.2, 0.8)) -> bool:
    """The selection rule's filter: the reference's predictor filter (max IT <= 30 minutes),
    active in 20-80 % of the minutes (an app that is never idle or almost never invoked shows
    nothing about cold starts), and at most 10 invocations per active minute on average (a
    burst that a 2-core simulation of five-stage DAGs can replay thousands of times)."""
    c = row.counts
    nz = np.flatnonzero(c)
    if nz.size < 3 or int(np.diff(nz).max()) > max_it:
        return False
    share = nz.size / c.size
    return active[0] <= share <= active[1] and float(c[nz].mean()) <= 10.0


def select_rows(trace: Trace, n: int = 3) -> list[TraceFunction]:
    """The documented rows for the benchmark: of the eligible rows (`eligible`), ordered by
    their IT coefficient of variation (ties by HashFunction), the rows at the quantiles
    (i + 1) / (n + 1): a regular, a typical and a bursty one for n = 3."""
    rows = sorted((r for r in trace if eligible(r)), key=lambda r: (it_cv(r.counts), r.hash_function))
    if len(rows) < n:
        raise ValueError(f"trace: only {len(rows)} eligible rows, {n} needed")
    return [rows[round((i + 1) / (n + 1) * (len(rows) - 1))] for i in range(n)]


def held_out_rows(trace: Trace, n: int = 3) -> list[tuple[TraceFunction, TraceFunction]]:
    """Rows no policy was tuned on, two per tuning row of `select_rows`, of its kind: among
    the eligible rows ordered as there, with every series that repeats an earlier one dropped
    (the sample has functions with identical series), the rows `d` places before and after
    it, d = a third of the spacing of the tuning rows."""
    tuning = select_rows(trace, n)
    names = {t.hash_function for t in tuning}
    seen: set[bytes] = set()
    rows = []
    for r in sorted((r for r in trace if eligible(r)), key=lambda r: r.hash_function not in names):
        if (key := r.counts.tobytes()) not in seen:  # tuning rows first: their twins are dropped
            seen.add(key)
            rows.append(r)
    rows.sort(key=lambda r: (it_cv(r.counts), r.hash_function))
    d = max(1, round(len(rows) / (3 * (n + 1))))
    at = [rows.index(t) for t in tuning]
    if at[0] - d < 0 or at[-1] + d >= len(rows) or any(b - a <= 2 * d for a, b in itertools.pairwise(at)):
        raise ValueError(f"trace: {len(rows)} distinct eligible rows, too few for a held-out set")
    return [(rows[i - d], rows[i + d]) for i in at]


# --- synthetic ------------------------------------------------------------------------------

# Measured on the Azure 2019 sample (1,250 functions x 1,440 minutes), see the module docs:
SAMPLE_LOG10_RATE_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.0, -3.16),
    (0.1, -2.86),
    (0.25, -2.04),
    (0.5, -1.24),
    (0.75, 0.15),
    (0.9, 1.0),
    (1.0, 3.02),
)
"""(quantile, log10 invocations per minute) of the functions' mean rates."""
SAMPLE_CV_CLASSES: tuple[tuple[str, float, tuple[float, float]], ...] = (
    ("periodic", 0.31, (0.0, 0.5)),
    ("random", 0.34, (0.5, 1.5)),
    ("bursty", 0.35, (1.5, 4.0)),
)
"""(class, share of functions, IT coefficient-of-variation range) of the sample."""
SAMPLE_DIURNAL: tuple[float, ...] = (
    0.806, 0.833, 0.804, 0.826, 0.91, 0.918, 0.904, 0.919, 0.951, 0.979, 1.027, 1.159,
    1.177, 1.14, 1.182, 1.3, 1.137, 1.217, 1.198, 1.059, 0.957, 0.899, 0.857, 0.839,
)  # fmt: skip
"""Hourly invocation volume over the day, relative to the mean (trough to peak ~1.6x)."""


def synthetic_counts(
    n_apps: int,
    *,
    minutes: int = 1440,
    seed: int = 0,
    max_rate_per_min: float = 10.0,
    min_rate_per_min: float = 1.0 / 60.0,
) -> list[npt.NDArray[np.int64]]:
    """Seeded per-minute count rows that follow the sample's statistics.

    Per app: a mean rate drawn from the sample's rate distribution (inverse of its quantile
    curve), clipped to [`min_rate_per_min`, `max_rate_per_min`]: below once an hour an app sees
    too few arrivals to say anything in a day, and above 10 a minute a few apps would hold most
    of the events (the clip applies to ~35 % and ~10 % of the sample's functions); an IT class
    drawn with the sample's shares and a CV uniform in its range; arrivals as a gamma renewal
    process (shape 1/CV², so its ITs have that CV; CV ~0 is a near-constant period) in
    operational time, mapped to clock time through the diurnal curve (so the rate follows it).
    """
    if n_apps < 0 or minutes < 1:
        raise ValueError("n_apps must be >= 0 and minutes >= 1")
    rng = np.random.default_rng(seed)
    qs = np.array([q for q, _ in SAMPLE_LOG10_RATE_QUANTILES])
    vs = np.array([v for _, v in SAMPLE_LOG10_RATE_QUANTILES])
    shares = np.array([s for _, s, _ in SAMPLE_CV_CLASSES])
    shares = shares / shares.sum()
    # operational time: cumulative intensity of the diurnal curve, minute by minute
    hourly = np.array(SAMPLE_DIURNAL)
    per_minute = np.repeat(hourly, 60)[np.arange(minutes) % 1440]
    cum = np.concatenate([[0.0], np.cumsum(per_minute)])
    rows: list[npt.NDArray[np.int64]] = []
    for _ in range(n_apps):
        rate = float(10 ** np.interp(rng.uniform(), qs, vs))
        rate = min(max(rate, min_rate_per_min), max_rate_per_min)
        lo, hi = SAMPLE_CV_CLASSES[int(rng.choice(len(shares), p=shares))][2]
        cv = max(float(rng.uniform(lo, hi)), 0.05)
        shape = 1.0 / (cv * cv)
        expected = rate * cum[-1]
        n = int(expected * 1.5 + 10 * math.sqrt(expected + 1) + 10)
        its = rng.gamma(shape, 1.0 / (rate * shape), size=n)
        op = rng.uniform(0.0, its[0]) + np.cumsum(its)  # stationary start
        op = op[op < cum[-1]]
        clock = np.interp(op, cum, np.arange(minutes + 1, dtype=np.float64))
        idx = np.minimum(clock.astype(np.int64), minutes - 1)
        rows.append(np.bincount(idx, minlength=minutes).astype(np.int64))
    return rows


def workloads_from_rows(
    rows: Sequence[npt.NDArray[np.int64]],
    *,
    history_minutes: int,
    slot_s: float = DEFAULT_SLOT_S,
    spread: Spread = "together",
    seed: int = 0,
    sources: Sequence[str] | None = None,
) -> list[Workload]:
    """One workload per row, the first `history_minutes` minutes as history."""
    return [
        Workload(
            np.asarray(r, dtype=np.int64),
            history_minutes,
            slot_s,
            spread,
            seed + i,
            sources[i] if sources is not None else f"synthetic:{i}",
        )
        for i, r in enumerate(rows)
    ]
