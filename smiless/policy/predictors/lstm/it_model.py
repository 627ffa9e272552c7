"""The SMIless IT model: the next IT's median (L1 loss), then the IT correction that shrinks it
so that it rarely over-estimates, since a late pre-warm costs a cold start.

Corrections: "mape" shrinks by (1 - MAPE_train) as the reference does; "strict" takes the
smaller of that and the largest factor whose validation over-estimate share is at most
`it_over_target`; "none" is the raw median; "record" (the default, beyond the reference) keeps
the median where its own recent record shows it does not over-estimate, else the "mape" shrink,
because one shrink factor per fit also shrinks a series whose median is exact or early.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from torch import nn

from smiless.policy.predictors.lstm.network import (
    FloatArray,
    Memo,
    Scaler,
    TwoWindowNet,
    forward_one,
    infer,
    one_thread,
)
from smiless.policy.predictors.lstm.training import Trained, TrainingBudget, pairs, recent_windows, train
from smiless.policy.predictors.metrics import over_rate, smape
from smiless.policy.predictors.series import SlotSeries

Correction = Literal["record", "mape", "strict", "none"]
_SHRINK_GRID: FloatArray = np.concatenate([np.geomspace(0.02, 1.0, 160)[:-1], [1.0]])


@dataclass
class ItModel:
    """The SMIless IT model (one app); the method is in the module docstring."""

    windows: tuple[int, ...] = (4, 8, 12, 16)
    correction: Correction = "record"
    it_over_target: float = 0.0
    min_its: int = 32
    record_window: int = 50
    record_min: int = 20
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    # fitted state
    n_in: int = 0
    it_scaler: Scaler | None = None
    count_scaler: Scaler | None = None
    constant: float | None = None
    factors: dict[str, float] = field(default_factory=dict)
    val_over: dict[str, float] = field(default_factory=dict)
    val_smape: dict[str, float] = field(default_factory=dict)
    # Validation forecasts (uncorrected) and truths, kept so a correction can be recalibrated.
    val_raw: tuple[float, ...] = ()
    val_true: tuple[float, ...] = ()
    net: TwoWindowNet | None = None
    not_fitted_reason: str = "not fitted"
    memo: Memo = field(default_factory=Memo, repr=False, compare=False)

    @property
    def fitted(self) -> bool:
        return self.constant is not None or self.net is not None

    def fit(self, s: SlotSeries) -> None:
        self.net, self.constant, self.not_fitted_reason = None, None, ""
        self.val_raw, self.val_true, self.memo = (), (), Memo()
        self.factors, self.val_over, self.val_smape = {}, {}, {}
        self.it_scaler = self.count_scaler = None
        its, counts = pairs(s)
        usable = [n for n in self.windows if its.size - n >= 16]
        if its.size < self.min_its or not usable:
            self.not_fitted_reason = f"{its.size} inter-arrivals < {self.min_its} needed"
            return
        keep = self.budget.max_windows + max(usable)
        its, counts = its[-keep:], counts[-keep:]
        if float(its.min()) == float(its.max()):
            # A constant IT (e.g. an app invoked every slot) needs no network.
            self.constant = float(its[0])
            self.factors = {"record": 1.0, "mape": 1.0, "strict": 1.0, "none": 1.0}
            self.val_over = dict.fromkeys(self.factors, 0.0)
            self.val_smape = dict.fromkeys(self.factors, 0.0)
            return
        self.it_scaler, self.count_scaler = Scaler.fit(its), Scaler.fit(counts)
        a, b = self.it_scaler.forward(its), self.count_scaler.forward(counts)
        loss_fn = nn.L1Loss()
        # Every window length is judged on the same last n_val targets.
        n_val = max(4, min(self.budget.max_windows, its.size - max(usable)) // 5)
        best: tuple[float, int, Trained, FloatArray, FloatArray] | None = None
        with one_thread():
            for n in usable:
                x_it, x_count, y = recent_windows(a, b, n, self.budget.max_windows)
                cut = len(y) - n_val
                trained = train(
                    x_it[:cut],
                    x_count[:cut],
                    y[:cut],
                    loss_fn=loss_fn,
                    budget=self.budget,
                    val=(x_it[cut:], x_count[cut:], y[cut:]),
                )
                if best is None or trained.val_loss < best[0] - 1e-9:
                    raw = self.it_scaler.inverse(infer(trained.net, x_it[cut:], x_count[cut:]))
                    best = (trained.val_loss, n, trained, raw, self.it_scaler.inverse(y[cut:]))
            assert best is not None
            _, n, trained, val_raw, val_true = best
            val_true = np.round(val_true)
            x_it, x_count, y = recent_windows(a, b, n, self.budget.max_windows)
            final = train(
                x_it, x_count, y, loss_fn=loss_fn, budget=self.budget, val=None, epochs=max(1, trained.epochs)
            )
            train_raw = self.it_scaler.inverse(infer(final.net, x_it, x_count))
        self.n_in, self.net = n, final.net
        self.val_raw, self.val_true = tuple(map(float, val_raw)), tuple(map(float, val_true))
        train_true = self.it_scaler.inverse(y)
        mape = float(np.mean(np.abs(train_raw - train_true) / train_true))
        self.factors = {"mape": max(0.0, 1.0 - mape), "none": 1.0}
        self._calibrate()

    def _calibrate(self) -> None:
        """Set the strict factor for `it_over_target` and each correction's validation scores
        ("record" walks the validation split, each forecast judged on the ones before it)."""
        raw, true = np.asarray(self.val_raw), np.asarray(self.val_true)
        self.factors["strict"] = min(self.factors["mape"], _largest_shrink(raw, true, self.it_over_target))
        scored = {mode: _shrink(raw, f) for mode, f in self.factors.items()}
        median, mape = scored["none"], scored["mape"]
        scored["record"] = np.array(
            [median[i] if self._clean(median[:i], true[:i]) else mape[i] for i in range(raw.size)],
            dtype=np.int64,
        )
        for mode, pred in scored.items():
            self.val_over[mode] = over_rate(pred, true)
            self.val_smape[mode] = smape(pred, true)

    def _clean(self, median: npt.NDArray[np.int64], true: FloatArray) -> bool:
        """Whether the median's record (its forecasts and what came, oldest first) is long
        enough and over-estimated at most `it_over_target` of its last `record_window`."""
        median, true = median[-self.record_window :], true[-self.record_window :]
        return median.size >= self.record_min and over_rate(median, true) <= self.it_over_target

    def _record(self, s: SlotSeries) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """The median forecasts the model makes of the last `record_window` ITs of s, each
        from the window before it, and those ITs: one batched forward."""
        n, its = self.n_in, s.its
        assert self.net is not None and self.it_scaler is not None and self.count_scaler is not None
        first = max(n, its.size - self.record_window)
        if first >= its.size:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        a = np.lib.stride_tricks.sliding_window_view(self.it_scaler.forward(its.astype(np.float64)), n)
        b = np.lib.stride_tricks.sliding_window_view(
            self.count_scaler.forward(s.arrival_counts[1:].astype(np.float64)), n
        )
        rows = slice(first - n, its.size - n)  # row r is the window its[r : r + n]
        raw = self.it_scaler.inverse(infer(self.net, a[rows], b[rows]))
        return _shrink(raw, 1.0), its[first:].astype(np.float64)

    def recalibrated(self, correction: Correction, it_over_target: float | None = None) -> ItModel:
        """A copy sharing the network, with another correction (and strict target)."""
        target = self.it_over_target if it_over_target is None else it_over_target
        m = replace(
            self,
            correction=correction,
            it_over_target=target,
            factors=dict(self.factors),
            val_over=dict(self.val_over),
            val_smape=dict(self.val_smape),
        )
        if m.net is not None and m.val_raw:
            m._calibrate()
        return m

    def raw_forecast(self, s: SlotSeries) -> float | None:
        """Uncorrected forecast in slots; None when the history is shorter than the window."""
        if self.constant is not None:
            return self.constant
        if self.net is None or self.it_scaler is None or self.count_scaler is None or s.its.size < self.n_in:
            return None
        return forward_one(
            self.net, self.it_scaler, self.count_scaler, self.it_scaler, self.n_in, s, self.memo
        )

    def forecast(self, s: SlotSeries) -> int | None:
        both = self.forecast_and_median(s)
        return None if both is None else both[0]

    def forecast_and_median(self, s: SlotSeries) -> tuple[int, int] | None:
        """The corrected forecast and the uncorrected median (correction "none"), in whole
        slots, from one forward."""
        raw = self.raw_forecast(s)
        if raw is None:
            return None
        one = np.array([raw])
        mode = self.correction
        if mode == "record":
            mode = "none" if self.constant is not None or self._clean(*self._record(s)) else "mape"
        return int(_shrink(one, self.factors[mode])[0]), int(_shrink(one, 1.0)[0])

    def state(self) -> dict[str, Any]:
        return {
            "windows": list(self.windows),
            "correction": self.correction,
            "it_over_target": self.it_over_target,
            "min_its": self.min_its,
            "record_window": self.record_window,
            "record_min": self.record_min,
            "n_in": self.n_in,
            "it_scaler": None if self.it_scaler is None else [self.it_scaler.lo, self.it_scaler.hi],
            "count_scaler": None
            if self.count_scaler is None
            else [self.count_scaler.lo, self.count_scaler.hi],
            "constant": self.constant,
            "factors": self.factors,
            "val_over": self.val_over,
            "val_smape": self.val_smape,
            "val_raw": list(self.val_raw),
            "val_true": list(self.val_true),
            "not_fitted_reason": self.not_fitted_reason,
        }

    @classmethod
    def restore(cls, d: dict[str, Any], budget: TrainingBudget, net_state: dict[str, Any] | None) -> ItModel:
        m = cls(
            windows=tuple(int(x) for x in d["windows"]),
            correction=as_correction(d["correction"]),
            it_over_target=float(d["it_over_target"]),
            min_its=int(d["min_its"]),
            record_window=int(d.get("record_window", cls.record_window)),
            record_min=int(d.get("record_min", cls.record_min)),
            budget=budget,
            n_in=int(d["n_in"]),
            it_scaler=None if d["it_scaler"] is None else Scaler(*map(float, d["it_scaler"])),
            count_scaler=None if d["count_scaler"] is None else Scaler(*map(float, d["count_scaler"])),
            constant=None if d["constant"] is None else float(d["constant"]),
            factors={str(k): float(v) for k, v in d["factors"].items()},
            val_over={str(k): float(v) for k, v in d["val_over"].items()},
            val_smape={str(k): float(v) for k, v in d["val_smape"].items()},
            val_raw=tuple(float(x) for x in d["val_raw"]),
            val_true=tuple(float(x) for x in d["val_true"]),
            not_fitted_reason=str(d["not_fitted_reason"]),
        )
        if net_state is not None:
            m.net = TwoWindowNet(budget.hidden)
            m.net.load_state_dict(net_state)
            m.net.eval()
        return m


def _shrink(raw: FloatArray, factor: float) -> npt.NDArray[np.int64]:
    """Apply a shrink factor and round to whole slots (>= 1), as a prediction is made."""
    return np.maximum(1, np.round(raw * factor)).astype(np.int64)


def _largest_shrink(raw: FloatArray, actual: FloatArray, target: float) -> float:
    """The largest factor f in (0, 1] whose over-estimate share on (raw, actual) is <= target.

    Always exists: a small enough f predicts one slot, which never over-estimates.
    """
    for f in _SHRINK_GRID[::-1]:
        if over_rate(_shrink(raw, float(f)), actual) <= target:
            return float(f)
    return float(_SHRINK_GRID[0])


def as_correction(value: object) -> Correction:
    """The IT correction `value` names (a stored state's, a setting's); ValueError otherwise."""
    if value == "record":
        return "record"
    if value == "strict":
        return "strict"
    if value == "mape":
        return "mape"
    if value == "none":
        return "none"
    raise ValueError(f"unknown IT correction {value!r}")
