"""ARIMA baseline: statsmodels fits the parameters; prediction filters new history with them.

Fitting picks the order with the lowest AIC among a few small ARMA orders, once per `fit`.
`predict` must not refit (the service answers `Predict` from the last model), and running the
statsmodels Kalman filter on every call costs milliseconds, so the one-step forecast is the
standard ARMA recursion over the last `filter_window` points, starting from zero innovations.
Over a window of 64 points that start-up error has decayed for any stationary, invertible fit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from smiless.policy.predictors.base import (
    Prediction,
    Predictor,
    cold_start_prediction,
    whole_count,
    whole_slots,
)
from smiless.policy.predictors.series import CountsLike, SlotSeries

FloatArray = npt.NDArray[np.float64]

#: Orders tried at fit time (p, q) with d = 0 and a constant: AIC is only comparable at equal d.
DEFAULT_ORDERS: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (1, 1), (2, 1))


@dataclass(frozen=True)
class ArmaParams:
    """y_t = mu + sum ar_i (y_{t-i} - mu) + e_t + sum ma_j e_{t-j} (statsmodels' sign convention)."""

    mu: float
    ar: tuple[float, ...] = ()
    ma: tuple[float, ...] = ()

    def forecast(self, values: FloatArray) -> float:
        """One-step-ahead forecast after `values`, innovations before the window taken as 0."""
        if values.size == 0:
            return self.mu
        z = values - self.mu
        p, q = len(self.ar), len(self.ma)
        ar = np.asarray(self.ar)
        ma = np.asarray(self.ma)
        e = np.zeros(z.size)
        for t in range(z.size):
            pred = 0.0
            if p:
                past = z[max(0, t - p) : t][::-1]
                pred += float(ar[: past.size] @ past)
            if q:
                past_e = e[max(0, t - q) : t][::-1]
                pred += float(ma[: past_e.size] @ past_e)
            e[t] = z[t] - pred
        nxt = 0.0
        if p:
            nxt += float(ar[: min(p, z.size)] @ z[::-1][:p])
        if q:
            nxt += float(ma[: min(q, z.size)] @ e[::-1][:q])
        return float(self.mu + nxt)

    def to_dict(self) -> dict[str, Any]:
        return {"mu": self.mu, "ar": list(self.ar), "ma": list(self.ma)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArmaParams:
        return cls(float(d["mu"]), tuple(float(x) for x in d["ar"]), tuple(float(x) for x in d["ma"]))


def fit_arma(
    values: FloatArray, orders: tuple[tuple[int, int], ...] = DEFAULT_ORDERS
) -> tuple[ArmaParams, tuple[int, int]]:
    """Fit ARMA(p, q) + constant for each order, keep the lowest AIC.

    A constant series, or one where every fit fails, gets the mean (ARMA(0, 0)).
    """
    mean = float(values.mean()) if values.size else 0.0
    if values.size < 8 or float(values.std()) == 0.0:
        return ArmaParams(mean), (0, 0)
    # Deferred: only fitting needs statsmodels. It ships no type hints.
    from statsmodels.tsa.arima.model import ARIMA  # type: ignore[import-untyped, unused-ignore]

    best: tuple[float, ArmaParams, tuple[int, int]] | None = None
    for p, q in orders:
        if values.size < 3 * (p + q + 1):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = ARIMA(values, order=(p, 0, q), trend="c").fit()
        except (ValueError, np.linalg.LinAlgError):
            continue
        aic = float(res.aic)
        if not np.isfinite(aic):
            continue
        params = ArmaParams(
            mu=float(res.params[0]),
            ar=tuple(float(x) for x in res.arparams),
            ma=tuple(float(x) for x in res.maparams),
        )
        if best is None or aic < best[0]:
            best = (aic, params, (p, q))
    if best is None:
        return ArmaParams(mean), (0, 0)
    return best[1], best[2]


@dataclass
class ArimaPredictor(Predictor):
    """ARMA on the IT series and on the arrival-count series, order by AIC.

    Fits on at most the last `max_fit_points` points (statsmodels' likelihood fit is the cost
    here). Needs `min_points` ITs to fit; unfitted or with too little history it answers with
    the cold-start rule.
    """

    max_fit_points: int = 500
    filter_window: int = 64
    min_points: int = 16
    it_params: ArmaParams | None = None
    count_params: ArmaParams | None = None
    orders: dict[str, list[int]] = field(default_factory=dict)
    kind = "arima"

    def fit(self, history: SlotSeries | CountsLike) -> Self:
        s = self._series(history)
        if s.its.size < self.min_points:
            self.it_params = self.count_params = None
            return self
        its = s.its[-self.max_fit_points :].astype(np.float64)
        counts = s.arrival_counts[1:][-self.max_fit_points :].astype(np.float64)
        self.it_params, it_order = fit_arma(its)
        self.count_params, count_order = fit_arma(counts)
        self.orders = {"it": list(it_order), "count": list(count_order)}
        return self

    def predict(self, history: SlotSeries | CountsLike) -> Prediction:
        s = self._series(history)
        if self.it_params is None or self.count_params is None:
            return cold_start_prediction(s, model=self.kind, reason="not fitted (too little history)")
        if s.its.size == 0:
            return cold_start_prediction(s, model=self.kind, reason="no inter-arrival observed yet")
        w = self.filter_window
        it = self.it_params.forecast(s.its[-w:].astype(np.float64))
        count = self.count_params.forecast(s.arrival_counts[-w:].astype(np.float64))
        return Prediction(
            it_slots=whole_slots(it),
            count=whole_count(count),
            elapsed_slots=s.elapsed_slots,
            model=self.kind,
        )

    def _state(self) -> dict[str, Any]:
        return {
            "max_fit_points": self.max_fit_points,
            "filter_window": self.filter_window,
            "min_points": self.min_points,
            "it": None if self.it_params is None else self.it_params.to_dict(),
            "count": None if self.count_params is None else self.count_params.to_dict(),
            "orders": self.orders,
        }

    @classmethod
    def _restore(cls, state: dict[str, Any], blob: bytes) -> Self:
        it, count = state.get("it"), state.get("count")
        return cls(
            max_fit_points=int(state["max_fit_points"]),
            filter_window=int(state["filter_window"]),
            min_points=int(state["min_points"]),
            it_params=None if it is None else ArmaParams.from_dict(it),
            count_params=None if count is None else ArmaParams.from_dict(count),
            orders={str(k): [int(x) for x in v] for k, v in dict(state.get("orders", {})).items()},
        )
