"""Baseline predictors the SMIless models are measured against.

Each forecasts the IT series and the arrival-count series with the same rule. None of them is
biased against over-estimating the IT or under-estimating the count; that bias is what the
SMIless models add, and the benchmark measures what it buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from smiless.policy.predictors.arima import ArmaParams, fit_arma
from smiless.policy.predictors.base import (
    Prediction,
    Predictor,
    cold_start_prediction,
    whole_count,
    whole_slots,
)
from smiless.policy.predictors.series import CountsLike, SlotSeries


class LastValuePredictor(Predictor):
    """The next IT and count repeat the last ones: the naive forecast every model must beat."""

    kind = "last-value"

    def fit(self, history: SlotSeries | CountsLike) -> Self:
        return self

    def predict(self, history: SlotSeries | CountsLike) -> Prediction:
        s = self._series(history)
        if s.its.size == 0:
            return cold_start_prediction(s, model=self.kind, reason="no inter-arrival observed yet")
        return Prediction(
            it_slots=int(s.its[-1]),
            count=int(s.arrival_counts[-1]),
            elapsed_slots=s.elapsed_slots,
            model=self.kind,
        )

    def _state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _restore(cls, state: dict[str, Any], blob: bytes) -> Self:
        return cls()


@dataclass
class MovingAveragePredictor(Predictor):
    """Mean of the last `window` ITs and counts, rounded to whole slots and invocations."""

    window: int = 5
    kind = "moving-average"

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be >= 1")

    def fit(self, history: SlotSeries | CountsLike) -> Self:
        return self

    def predict(self, history: SlotSeries | CountsLike) -> Prediction:
        s = self._series(history)
        if s.its.size == 0:
            return cold_start_prediction(s, model=self.kind, reason="no inter-arrival observed yet")
        return Prediction(
            it_slots=whole_slots(float(s.its[-self.window :].mean())),
            count=whole_count(float(s.arrival_counts[-self.window :].mean())),
            elapsed_slots=s.elapsed_slots,
            model=self.kind,
        )

    def _state(self) -> dict[str, Any]:
        return {"window": self.window}

    @classmethod
    def _restore(cls, state: dict[str, Any], blob: bytes) -> Self:
        return cls(window=int(state["window"]))


def fft_extrapolate(values: npt.NDArray[np.floating] | npt.NDArray[np.integer], harmonics: int) -> float:
    """One-step FFT extrapolation of a series (IceBreaker's FIP, as the reference re-implements it).

    Remove a least-squares linear trend, keep the `harmonics` strongest frequencies of the
    residual, and evaluate trend + those sinusoids one step past the end. A series with a
    period that divides its length is continued exactly.

    Example: [1, 5, 1, 5, 1, 5] -> 1.0 (the alternation continues).
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        raise ValueError("cannot extrapolate an empty series")
    if n < 3:
        return float(x[-1])
    t = np.arange(n, dtype=np.float64)
    slope, intercept = np.polyfit(t, x, 1)
    resid = x - (slope * t + intercept)
    spectrum = np.fft.rfft(resid)
    # Strongest harmonics by amplitude; the DC term is ~0 after detrending.
    keep = np.argsort(np.abs(spectrum))[::-1][: max(0, harmonics)]
    k = keep.astype(np.float64)
    # Real inverse DFT at t = n; the conjugate half doubles every term but DC and Nyquist.
    weight = np.where((keep == 0) | ((n % 2 == 0) & (keep == n // 2)), 1.0, 2.0)
    phase = 2.0 * np.pi * k * n / n
    periodic = float(np.sum(weight * np.real(spectrum[keep] * np.exp(1j * phase))) / n)
    return float(slope * n + intercept + periodic)


@dataclass
class FourierPredictor(Predictor):
    """IceBreaker's FIP: FFT extrapolation of the last `window` ITs and counts.

    Parameters follow the reference's re-implementation: a 60-point window, 10 harmonics,
    linear detrend. With fewer than `min_points` ITs the cold-start rule answers.
    """

    window: int = 60
    harmonics: int = 10
    min_points: int = 8
    kind = "fip"

    def __post_init__(self) -> None:
        if self.window < 3 or self.harmonics < 1 or self.min_points < 1:
            raise ValueError("window must be >= 3, harmonics and min_points >= 1")

    def fit(self, history: SlotSeries | CountsLike) -> Self:
        return self

    def predict(self, history: SlotSeries | CountsLike) -> Prediction:
        s = self._series(history)
        if s.its.size < self.min_points:
            return cold_start_prediction(
                s, model=self.kind, reason=f"{s.its.size} inter-arrivals < {self.min_points} needed"
            )
        it = fft_extrapolate(s.its[-self.window :], self.harmonics)
        count = fft_extrapolate(s.arrival_counts[-self.window :], self.harmonics)
        return Prediction(
            it_slots=whole_slots(it),
            count=whole_count(count),
            elapsed_slots=s.elapsed_slots,
            model=self.kind,
        )

    def _state(self) -> dict[str, Any]:
        return {"window": self.window, "harmonics": self.harmonics, "min_points": self.min_points}

    @classmethod
    def _restore(cls, state: dict[str, Any], blob: bytes) -> Self:
        return cls(int(state["window"]), int(state["harmonics"]), int(state["min_points"]))


@dataclass
class HybridHistogramPredictor(Predictor):
    """Azure's hybrid histogram policy (Shahrad et al., ATC'20), in slots.

    It does not forecast a point IT; it sets a pre-warm window (stay unloaded that long after
    an invocation, then load) and a keep-alive window after it. We report the pre-warm window
    as its IT prediction (the moment it expects to need the instance again) and its keep-alive
    window as `keep_alive_slots`. It has no count model: the count is the last one seen.

    Branches (thresholds from the dslab re-implementation, reference §7):
    - too few ITs (< `min_samples`) or a flat histogram (CV of bin counts < `cv_threshold`):
      not representative; pre-warm 0, keep-alive = the whole range.
    - share of ITs beyond the range >= `oob_threshold`: ARIMA forecast p of the IT;
      pre-warm p·(1 - m), keep-alive 2·p·m with m = `arima_margin`.
    - otherwise pre-warm = head bin·bin·(1 - h), keep-alive = (tail bin + 1)·bin·(1 + h), with
      head/tail the `head`/`tail` percentiles and h = `hist_margin`.
    The defaults (bin 1 slot, range 240 slots) are Azure's 1-minute bins over 4 hours when one
    slot is one trace minute.
    """

    bin_slots: int = 1
    range_slots: int = 240
    head: float = 0.05
    tail: float = 0.99
    cv_threshold: float = 2.0
    oob_threshold: float = 0.5
    arima_margin: float = 0.15
    hist_margin: float = 0.10
    min_samples: int = 5
    arima: ArmaParams | None = None
    kind = "hybrid-histogram"

    def __post_init__(self) -> None:
        if self.bin_slots < 1 or self.range_slots < self.bin_slots:
            raise ValueError("bin_slots must be >= 1 and range_slots >= bin_slots")
        if not (0.0 <= self.head < self.tail <= 1.0):
            raise ValueError("need 0 <= head < tail <= 1")

    def fit(self, history: SlotSeries | CountsLike) -> Self:
        """Only the out-of-bounds branch has parameters: the ARIMA of the IT it falls back to
        (order by AIC over the last 500 ITs, as `ArimaPredictor`; none below 16 ITs)."""
        its = self._series(history).its
        self.arima = fit_arma(its[-500:].astype(np.float64))[0] if its.size >= 16 else None
        return self

    def predict(self, history: SlotSeries | CountsLike) -> Prediction:
        s = self._series(history)
        if s.its.size == 0:
            return cold_start_prediction(
                s, model=self.kind, reason="no inter-arrival observed yet", keep_alive_slots=self.range_slots
            )
        count = int(s.arrival_counts[-1])
        n_bins = self.range_slots // self.bin_slots
        in_range = s.its[s.its < n_bins * self.bin_slots]
        oob = 1.0 - in_range.size / s.its.size
        if oob >= self.oob_threshold and self.arima is not None:
            forecast = max(1.0, self.arima.forecast(s.its[-64:].astype(np.float64)))
            prewarm = forecast * (1.0 - self.arima_margin)
            return self._answer(s, prewarm, 2.0 * forecast * self.arima_margin, count, "out-of-bounds: ARIMA")
        hist = np.bincount(in_range // self.bin_slots, minlength=n_bins).astype(np.float64)
        mean = float(hist.mean())
        cv = float(hist.std() / mean) if mean > 0 else 0.0
        if in_range.size < self.min_samples or cv < self.cv_threshold:
            why = f"histogram not representative ({in_range.size} ITs, CV {cv:.2f}): fixed keep-alive"
            return self._answer(s, 0.0, float(self.range_slots), count, why)
        cdf = np.cumsum(hist) / hist.sum()
        head_bin = int(np.searchsorted(cdf, self.head, side="left"))
        tail_bin = int(np.searchsorted(cdf, self.tail, side="left"))
        prewarm = head_bin * self.bin_slots * (1.0 - self.hist_margin)
        keep = (tail_bin + 1) * self.bin_slots * (1.0 + self.hist_margin)
        return self._answer(s, prewarm, keep, count, "")

    def _answer(self, s: SlotSeries, prewarm: float, keep: float, count: int, why: str) -> Prediction:
        return Prediction(
            it_slots=whole_slots(prewarm),
            count=max(1, count),
            elapsed_slots=s.elapsed_slots,
            model=self.kind,
            fallback=False,
            reason=why,
            keep_alive_slots=int(np.ceil(keep)),
            prewarm_slots=prewarm,
        )

    def _state(self) -> dict[str, Any]:
        return {
            "bin_slots": self.bin_slots,
            "range_slots": self.range_slots,
            "head": self.head,
            "tail": self.tail,
            "cv_threshold": self.cv_threshold,
            "oob_threshold": self.oob_threshold,
            "arima_margin": self.arima_margin,
            "hist_margin": self.hist_margin,
            "min_samples": self.min_samples,
            "arima": None if self.arima is None else self.arima.to_dict(),
        }

    @classmethod
    def _restore(cls, state: dict[str, Any], blob: bytes) -> Self:
        arima_state = state.get("arima")
        return cls(
            bin_slots=int(state["bin_slots"]),
            range_slots=int(state["range_slots"]),
            head=float(state["head"]),
            tail=float(state["tail"]),
            cv_threshold=float(state["cv_threshold"]),
            oob_threshold=float(state["oob_threshold"]),
            arima_margin=float(state["arima_margin"]),
            hist_margin=float(state["hist_margin"]),
            min_samples=int(state["min_samples"]),
            arima=None if arima_state is None else ArmaParams.from_dict(arima_state),
        )
