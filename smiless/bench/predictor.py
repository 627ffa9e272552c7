"""Predictor accuracy benchmark on an Azure Functions trace (issue 5).

For every predictor: fit on the first 80 % of each selected function's IT series (the
per-minute count history up to that arrival), then walk through the last 20 %: at each
arrival, predict the next IT and the count of the next arrival from the history so far (the
model is not refitted), and compare with what came. One slot = one trace minute.

Selection rule (deterministic): functions with at least `min_active` active minutes (so the
test part holds >= 20 ITs) and at least `min_gap_share` of ITs longer than one minute (an app
invoked every minute has IT 1 throughout, which every predictor gets exactly right, so it
only dilutes the comparison). Of those, sorted by (active minutes, HashFunction),
`max_functions` are taken at evenly spaced ranks, so sparse and dense apps are both in.
With the defaults (100 active minutes, 5 %, 80 functions; 317 qualify in the Azure sample)
the run took 95 s on 2 cores (185 s while other work shared the machine).

Metrics per function, then averaged over functions (each function counts once, however many
arrivals it has):
- it_smape: sMAPE of the IT (0..2 scale); it_over_rate: share of IT over-estimates (a late
  pre-warm); count_under_rate: share of arrivals whose count was under-estimated (under-
  provisioning); count_smape: sMAPE of the count (what the bias against under-estimation
  costs in over-provisioning).
- fit_s: mean seconds per fit; predict_us: mean microseconds per predict call (including
  deriving the series from the count history).

SMIless appears four times, sharing one fit (so the same fit_s): "smiless" (the default IT
correction, "record": the median where its last 50 forecasts over-estimated none, else the
reference's shrink), "smiless-mape" (the reference's 1 - MAPE_train shrink throughout),
"smiless-strict" (the smaller of that and a shrink with no over-estimate on the validation
split) and "smiless-uncorrected" (the network's median forecast). The variants reuse the
default's forward, so each is charged the default's predict_us (which includes the batched
forward of its record): an upper bound for them.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from smiless.policy.predictors import (
    ArimaPredictor,
    FourierPredictor,
    HybridHistogramPredictor,
    LastValuePredictor,
    MovingAveragePredictor,
    Predictor,
    SlotSeries,
    over_rate,
    smape,
    under_rate,
)
from smiless.policy.predictors.lstm import SMIlessPredictor
from smiless.trace import DEFAULT_TRACE, Trace, TraceError, TraceFunction, load_trace

#: Row order of the report: the SMIless variants first, then the baselines.
PREDICTORS: tuple[str, ...] = (
    "smiless",
    "smiless-mape",
    "smiless-strict",
    "smiless-uncorrected",
    "last-value",
    "moving-average",
    "fip",
    "arima",
    "hybrid-histogram",
)


@dataclass(frozen=True)
class BenchConfig:
    """Which functions, how much is test data, how many worker processes."""

    min_active: int = 100
    min_gap_share: float = 0.05
    max_functions: int = 80
    test_share: float = 0.2
    jobs: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.test_share < 1.0:
            raise ValueError("test_share must be in (0, 1)")
        if self.max_functions < 1 or self.jobs < 1 or self.min_active < 2:
            raise ValueError("max_functions and jobs must be >= 1, min_active >= 2")


@dataclass(frozen=True)
class Score:
    """One predictor on one function."""

    it_smape: float
    it_over_rate: float
    count_under_rate: float
    count_smape: float
    fit_s: float
    predict_s: float
    calls: int


@dataclass(frozen=True)
class Row:
    """One predictor over all selected functions: the benchmark's output row."""

    predictor: str
    functions: int
    it_smape: float
    it_over_rate: float
    count_under_rate: float
    count_smape: float
    fit_s: float
    predict_us: float


def select_functions(trace: Trace, cfg: BenchConfig) -> list[TraceFunction]:
    """Apply the selection rule in the module docstring."""
    eligible = []
    for f in trace:
        its = SlotSeries.from_counts(f.counts).its
        if f.active_minutes >= cfg.min_active and its.size and float(np.mean(its > 1)) >= cfg.min_gap_share:
            eligible.append(f)
    eligible.sort(key=lambda f: (f.active_minutes, f.hash_function))
    if len(eligible) <= cfg.max_functions:
        return eligible
    ranks = np.unique(np.linspace(0, len(eligible) - 1, cfg.max_functions).round().astype(int))
    return [eligible[int(i)] for i in ranks]


def _baselines() -> dict[str, Callable[[], Predictor]]:
    return {
        "last-value": LastValuePredictor,
        "moving-average": MovingAveragePredictor,
        "fip": FourierPredictor,
        "arima": ArimaPredictor,
        "hybrid-histogram": HybridHistogramPredictor,
    }


def evaluate_function(counts: npt.NDArray[np.int64], test_share: float = 0.2) -> dict[str, Score]:
    """Fit every predictor on the head of one function's history and score it on the tail."""
    s = SlotSeries.from_counts(counts)
    n_test = max(1, math.ceil(test_share * s.its.size))
    first = s.its.size - n_test  # index of the first test IT
    fit_history = counts[: s.arrival_slots[first] + 1]
    # History before test IT j ends at the arrival that starts it; the truth is IT j and the
    # count of the arrival that ends it.
    cuts = [int(s.arrival_slots[j]) + 1 for j in range(first, s.its.size)]
    true_it = s.its[first:]
    true_count = s.arrival_counts[first + 1 :]

    fitted: dict[str, tuple[Predictor, float]] = {}
    t0 = time.perf_counter()
    smiless = SMIlessPredictor().fit(fit_history)
    smiless_fit = time.perf_counter() - t0
    fitted["smiless"] = (smiless, smiless_fit)
    for name, variant in _smiless_variants(smiless).items():
        fitted[name] = (variant, smiless_fit)
    for name, make in _baselines().items():
        t0 = time.perf_counter()
        p = make().fit(fit_history)
        fitted[name] = (p, time.perf_counter() - t0)

    it_pred = {name: np.empty(len(cuts), dtype=np.int64) for name in fitted}
    count_pred = {name: np.empty(len(cuts), dtype=np.int64) for name in fitted}
    spent = dict.fromkeys(fitted, 0.0)
    # Cuts outside, predictors inside: the SMIless variants then reuse the forward that
    # "smiless" just ran (shared cache), so they are charged its time, not a cache hit's.
    for i, cut in enumerate(cuts):
        for name, (p, _) in fitted.items():
            t0 = time.perf_counter()
            pr = p.predict(counts[:cut])
            spent[name] += time.perf_counter() - t0
            it_pred[name][i], count_pred[name][i] = pr.it_slots, pr.count
    scores: dict[str, Score] = {}
    for name, (_, fit_s) in fitted.items():
        charged = spent["smiless"] if name.startswith("smiless") else spent[name]
        scores[name] = Score(
            it_smape=smape(it_pred[name], true_it),
            it_over_rate=over_rate(it_pred[name], true_it),
            count_under_rate=under_rate(count_pred[name], true_count),
            count_smape=smape(count_pred[name], true_count),
            fit_s=fit_s,
            predict_s=charged,
            calls=len(cuts),
        )
    return scores


def _smiless_variants(smiless: SMIlessPredictor) -> dict[str, Predictor]:
    """The SMIless rows beside the default: other IT corrections on the same fit."""
    return {
        "smiless-mape": smiless.with_correction("mape"),
        "smiless-strict": smiless.with_correction("strict"),
        "smiless-uncorrected": smiless.with_correction("none"),
    }


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def summarise(per_function: Sequence[dict[str, Score]]) -> list[Row]:
    """Average per-function scores into one row per predictor (macro average)."""
    rows = []
    for name in PREDICTORS:
        sc = [d[name] for d in per_function if name in d]
        if not sc:
            continue
        calls = sum(x.calls for x in sc)
        rows.append(
            Row(
                predictor=name,
                functions=len(sc),
                it_smape=round(float(np.mean([x.it_smape for x in sc])), 4),
                it_over_rate=round(float(np.mean([x.it_over_rate for x in sc])), 4),
                count_under_rate=round(float(np.mean([x.count_under_rate for x in sc])), 4),
                count_smape=round(float(np.mean([x.count_smape for x in sc])), 4),
                fit_s=round(float(np.mean([x.fit_s for x in sc])), 4),
                predict_us=round(sum(x.predict_s for x in sc) / calls * 1e6, 1),
            )
        )
    return rows


def run_benchmark(trace_path: str | Path, cfg: BenchConfig | None = None) -> list[Row]:
    """Load the trace, select functions, evaluate them in `cfg.jobs` processes, summarise."""
    cfg = cfg or BenchConfig()
    functions = select_functions(load_trace(trace_path), cfg)
    if not functions:
        return []
    series = [f.counts for f in functions]
    tests = [cfg.test_share] * len(series)
    # One BLAS thread per process (statsmodels' fits), like torch's one thread: the workers
    # already use every core. Spawned workers inherit the environment.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if cfg.jobs == 1:
        _worker_init()
        results = [evaluate_function(c, t) for c, t in zip(series, tests, strict=True)]
    else:
        # spawn, not fork: forking a process that has started torch's thread pools can hang.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=ctx, initializer=_worker_init) as pool:
            results = list(pool.map(evaluate_function, series, tests))
    return summarise(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smiless.bench.predictor",
        description="Predictor accuracy on an Azure Functions trace; prints one JSON row per predictor.",
    )
    parser.add_argument("--trace", default=str(DEFAULT_TRACE), help="Azure invocations CSV")
    parser.add_argument("--min-active", type=int, default=BenchConfig.min_active)
    parser.add_argument("--min-gap-share", type=float, default=BenchConfig.min_gap_share)
    parser.add_argument("--max-functions", type=int, default=BenchConfig.max_functions)
    parser.add_argument("--jobs", type=int, default=min(BenchConfig.jobs, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    cfg = BenchConfig(
        min_active=args.min_active,
        min_gap_share=args.min_gap_share,
        max_functions=args.max_functions,
        jobs=max(1, args.jobs),
    )
    t0 = time.perf_counter()
    try:
        rows = run_benchmark(args.trace, cfg)
    except (TraceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(json.dumps(asdict(row)))
    print(
        f"# {rows[0].functions if rows else 0} functions in {time.perf_counter() - t0:.1f} s", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
