"""The predictor interface, its result, the cold-start rule and the byte format of a model.

Every predictor (the SMIless models and the baselines) answers the same question from an
app's per-slot count history: *how many slots after the last arrival does the next one come,
and how many invocations arrive with it?* Fitting and predicting are separate so the service
can train in the background and answer `Predict` from the last fitted model on fresh history.
"""

from __future__ import annotations

import json
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from smiless.policy.predictors.series import CountsLike, SlotSeries, as_series


@dataclass(frozen=True)
class Prediction:
    """One prediction, in slots, with the reasons behind it.

    it_slots: slots from the last arrival slot to the next one (>= 1, whole slots: arrivals are
        only resolved to a slot).
    count: invocations expected with that next arrival; an upper bound by design for the
        SMIless count model, a point forecast for most baselines.
    elapsed_slots: slots already passed since the last arrival when the history ends; the
        next arrival is expected `next_in_slots` from now.
    keep_alive_slots: how long to keep an idle instance, when the predictor has an opinion
        (the SMIless idle-time percentile, the hybrid histogram's keep-alive window).
    prewarm_slots: the hybrid histogram's pre-warm window (slots to stay unloaded after an
        invocation); None for predictors without one.
    model: which predictor answered ("smiless", "last-value", ...; "cold-start" when the
        cold-start rule answered for the whole prediction).
    fallback / reason: whether any part came from a fallback rule, and why in words.
    it_confidence: estimated P(actual IT >= it_slots), i.e. 1 - the validation share of IT
        over-estimates; None when not measured.
    count_confidence: estimated P(actual count <= count) on validation data; None when not
        measured.
    recent_error: validation sMAPE of the IT prediction (0..2); None when not measured.
    it_median_slots: the IT model's uncorrected median, when `it_slots` shrinks it so that it
        rarely over-estimates (the SMIless correction); None for predictors without one. The
        planner may use it where a late pre-warm still meets the SLA.
    """

    it_slots: int
    count: int
    elapsed_slots: int
    model: str
    fallback: bool = False
    reason: str = ""
    keep_alive_slots: int | None = None
    prewarm_slots: float | None = None
    it_confidence: float | None = None
    count_confidence: float | None = None
    recent_error: float | None = None
    it_median_slots: int | None = None

    @property
    def next_in_slots(self) -> int:
        """Slots from the end of the history to the predicted next arrival.

        When the app has already been idle longer than predicted, the prediction was wrong
        and the next arrival may come at any moment: 0 (be ready now) is the safe reading.
        """
        return max(0, self.it_slots - self.elapsed_slots)


def whole_slots(value: float) -> int:
    """Round a forecast IT to whole slots, never below 1 (an IT is at least one slot)."""
    if not np.isfinite(value):
        return 1
    return max(1, round(value))


def whole_count(value: float) -> int:
    """Round a forecast count to a whole number of invocations, never below 1: the count is
    conditional on an arrival, and an arrival has at least one invocation."""
    if not np.isfinite(value):
        return 1
    return max(1, round(value))


def cold_start_prediction(
    series: SlotSeries, *, model: str, reason: str, keep_alive_slots: int | None = None
) -> Prediction:
    """The documented conservative rule for when a predictor has too little history.

    IT = the shortest IT seen so far (1 slot if none): pre-warming early costs a little idle
    time, pre-warming late costs an SLA violation. Count = the largest arrival count seen (1 if
    none): provisioning for the largest burst seen is the cheap side of the same trade.
    """
    it = int(series.its.min()) if series.its.size else 1
    count = int(series.arrival_counts.max()) if series.arrival_counts.size else 1
    return Prediction(
        it_slots=max(1, it),
        count=max(1, count),
        elapsed_slots=series.elapsed_slots,
        model=model,
        fallback=True,
        reason=reason,
        keep_alive_slots=keep_alive_slots,
    )


_MAGIC = b"SMLP"
_VERSION = 1
_HEADER = struct.Struct(">4sBI")


class ModelFormatError(ValueError):
    """Bytes that are not a predictor this code can load (wrong magic, version or kind)."""


class Predictor(ABC):
    """fit on a history, predict from a (possibly longer) history, round-trip through bytes.

    `fit` may be slow (the LSTM models train); `predict` must be cheap and never train. A
    predictor that was never fitted, or whose history is too short, answers with the
    cold-start rule and says so in the prediction.
    """

    kind: ClassVar[str]

    @abstractmethod
    def fit(self, history: SlotSeries | CountsLike) -> Self:
        """Learn from the history; returns self so calls chain."""

    @abstractmethod
    def predict(self, history: SlotSeries | CountsLike) -> Prediction:
        """Predict the next IT and count from the history ending now."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """JSON-serialisable configuration and fitted parameters."""

    def _blob(self) -> bytes:
        """Binary payload (e.g. network weights); empty for most predictors."""
        return b""

    @classmethod
    @abstractmethod
    def _restore(cls, state: dict[str, Any], blob: bytes) -> Self:
        """Inverse of `_state` and `_blob`."""

    def to_bytes(self) -> bytes:
        """Serialise to a self-describing byte string (no pickle, so loading is safe)."""
        header = json.dumps({"kind": self.kind, "state": self._state()}, sort_keys=True).encode()
        return _HEADER.pack(_MAGIC, _VERSION, len(header)) + header + self._blob()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        kind, state, blob = _split(data)
        if kind != cls.kind:
            raise ModelFormatError(f"bytes hold a {kind!r} predictor, not {cls.kind!r}")
        return cls._restore(state, blob)

    @staticmethod
    def _series(history: SlotSeries | CountsLike) -> SlotSeries:
        return as_series(history)


def _split(data: bytes) -> tuple[str, dict[str, Any], bytes]:
    if len(data) < _HEADER.size:
        raise ModelFormatError("predictor bytes are truncated")
    magic, version, n = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ModelFormatError("not a smiless predictor (bad magic)")
    if version != _VERSION:
        raise ModelFormatError(f"unsupported predictor format version {version}")
    end = _HEADER.size + n
    if len(data) < end:
        raise ModelFormatError("predictor bytes are truncated")
    try:
        doc = json.loads(data[_HEADER.size : end])
        kind = str(doc["kind"])
        state = dict(doc["state"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"predictor header is not valid: {exc}") from exc
    return kind, state, data[end:]


def stored_kind(data: bytes) -> str:
    """The predictor kind recorded in serialised bytes (for dispatching a load)."""
    return _split(data)[0]
