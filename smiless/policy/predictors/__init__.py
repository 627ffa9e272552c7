"""Arrival predictors: the SMIless IT and count models, the idle-time keep-alive, baselines.

Pure policy code: no I/O, no clock. The predictor service gathers an app's history, calls
`fit` in the background and `predict` on request, and stores `to_bytes()` in Redis.

The SMIless models need torch; they are imported on first use (`SMIlessPredictor`,
`load_predictor` of a "smiless" model), so the baselines and the series helpers stay cheap
to import where torch is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smiless.policy.predictors.arima import ArimaPredictor
from smiless.policy.predictors.base import (
    ModelFormatError,
    Prediction,
    Predictor,
    cold_start_prediction,
    stored_kind,
)
from smiless.policy.predictors.baselines import (
    FourierPredictor,
    HybridHistogramPredictor,
    LastValuePredictor,
    MovingAveragePredictor,
    fft_extrapolate,
)
from smiless.policy.predictors.idle import IdleTimeDistribution, KeepAlive
from smiless.policy.predictors.metrics import over_rate, smape, under_rate
from smiless.policy.predictors.series import (
    SlotSeries,
    as_series,
    burst_span,
    inter_arrivals,
    slot_counts,
)

if TYPE_CHECKING:
    from smiless.policy.predictors.lstm import CountModel, ItModel, SMIlessPredictor, TrainingBudget

#: Every predictor kind, SMIless first; `make_predictor` builds each with its defaults.
PREDICTOR_KINDS: tuple[str, ...] = (
    "smiless",
    "last-value",
    "moving-average",
    "fip",
    "arima",
    "hybrid-histogram",
)

_LAZY = {"SMIlessPredictor", "ItModel", "CountModel", "TrainingBudget"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from smiless.policy.predictors import lstm

        return getattr(lstm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _classes() -> dict[str, type[Predictor]]:
    from smiless.policy.predictors.lstm import SMIlessPredictor

    classes: list[type[Predictor]] = [
        SMIlessPredictor,
        LastValuePredictor,
        MovingAveragePredictor,
        FourierPredictor,
        ArimaPredictor,
        HybridHistogramPredictor,
    ]
    return {c.kind: c for c in classes}


def make_predictor(kind: str) -> Predictor:
    """A fresh, unfitted predictor of `kind` with its default settings."""
    classes = _classes()
    if kind not in classes:
        raise ValueError(f"unknown predictor {kind!r}; known: {', '.join(PREDICTOR_KINDS)}")
    return classes[kind]()


def load_predictor(data: bytes) -> Predictor:
    """Rebuild any predictor from `Predictor.to_bytes()` output, whatever its kind."""
    kind = stored_kind(data)
    classes = _classes()
    if kind not in classes:
        raise ModelFormatError(f"unknown predictor kind {kind!r} in stored bytes")
    return classes[kind].from_bytes(data)


__all__ = [
    "PREDICTOR_KINDS",
    "ArimaPredictor",
    "CountModel",
    "FourierPredictor",
    "HybridHistogramPredictor",
    "IdleTimeDistribution",
    "ItModel",
    "KeepAlive",
    "LastValuePredictor",
    "ModelFormatError",
    "MovingAveragePredictor",
    "Prediction",
    "Predictor",
    "SMIlessPredictor",
    "SlotSeries",
    "TrainingBudget",
    "as_series",
    "burst_span",
    "cold_start_prediction",
    "fft_extrapolate",
    "inter_arrivals",
    "load_predictor",
    "make_predictor",
    "over_rate",
    "slot_counts",
    "smape",
    "under_rate",
]
