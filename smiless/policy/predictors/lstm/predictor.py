"""The SMIless predictor: the IT model, the count model and the idle-time keep-alive behind
the common `Predictor` interface, with the reference's fallbacks made conservative."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Self

import torch

from smiless.policy.predictors.base import Prediction, Predictor, cold_start_prediction, whole_slots
from smiless.policy.predictors.idle import IdleTimeDistribution
from smiless.policy.predictors.lstm.count_model import CountModel
from smiless.policy.predictors.lstm.it_model import Correction, ItModel
from smiless.policy.predictors.lstm.network import net_bytes
from smiless.policy.predictors.lstm.training import TrainingBudget
from smiless.policy.predictors.series import CountsLike, SlotSeries


@dataclass
class SMIlessPredictor(Predictor):
    """IT model + count model + idle-time keep-alive, behind the common interface.

    A component without enough history answers with the cold-start rule (reference
    fallbacks, made conservative: shortest IT, largest count seen), and the prediction says
    which component fell back and why.
    """

    it_model: ItModel = field(default_factory=ItModel)
    count_model: CountModel = field(default_factory=CountModel)
    idle: IdleTimeDistribution = field(default_factory=IdleTimeDistribution)
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    kind = "smiless"

    def __post_init__(self) -> None:
        self.it_model.budget = self.budget
        self.count_model.budget = self.budget

    def fit(self, history: SlotSeries | CountsLike) -> Self:
        s = self._series(history)
        self.it_model.fit(s)
        self.count_model.fit(s)
        return self

    def with_correction(
        self,
        correction: Correction,
        it_over_target: float | None = None,
        count_under_target: float | None = None,
    ) -> SMIlessPredictor:
        """A copy sharing the trained networks but with another IT correction (and targets).

        Cheap: the validation forecasts are kept, so nothing is retrained. The copy shares the
        last-forward cache, so predicting with both costs one forward.
        """
        count_model = self.count_model
        if count_under_target is not None:
            count_model = count_model.recalibrated(count_under_target)
        return SMIlessPredictor(
            it_model=self.it_model.recalibrated(correction, it_over_target),
            count_model=count_model,
            idle=self.idle,
            budget=self.budget,
        )

    def predict(self, history: SlotSeries | CountsLike) -> Prediction:
        s = self._series(history)
        keep = self.idle.keep_alive(s)
        fallback = cold_start_prediction(s, model="cold-start", reason="", keep_alive_slots=keep.slots)
        reasons: list[str] = []
        both = self.it_model.forecast_and_median(s)
        it, median = (None, None) if both is None else both
        if it is None:
            why = (
                self.it_model.not_fitted_reason
                or f"{s.its.size} inter-arrivals < window {self.it_model.n_in}"
            )
            reasons.append(f"IT: {why}; shortest IT seen")
            it = fallback.it_slots
        count = self.count_model.forecast(s)
        if count is None:
            why = (
                self.count_model.not_fitted_reason
                or f"{s.its.size} inter-arrivals < window {self.count_model.n_in}"
            )
            reasons.append(f"count: {why}; largest count seen")
            count = fallback.count
        # A quantile bucketed up with a margin can exceed any count the app has ever had; the
        # largest count seen is already the conservative answer, so it caps the forecast.
        count = min(count, fallback.count)
        if keep.fallback:
            reasons.append(f"keep-alive: {keep.reason}")
        model_fell_back = len(reasons) - int(keep.fallback)
        mode = self.it_model.correction
        it_over = self.it_model.val_over.get(mode) if self.it_model.net is not None else None
        return Prediction(
            it_slots=whole_slots(it),
            count=max(1, count),
            elapsed_slots=s.elapsed_slots,
            model="cold-start" if model_fell_back == 2 else self.kind,
            fallback=bool(reasons),
            reason="; ".join(reasons),
            keep_alive_slots=keep.slots,
            it_confidence=None if it_over is None else 1.0 - it_over,
            count_confidence=(
                None
                if self.count_model.val_under is None or self.count_model.net is None
                else 1.0 - self.count_model.val_under
            ),
            recent_error=self.it_model.val_smape.get(mode) if self.it_model.net is not None else None,
            it_median_slots=median,
        )

    def _state(self) -> dict[str, Any]:
        b = self.budget
        return {
            "budget": {
                "hidden": b.hidden,
                "max_epochs": b.max_epochs,
                "patience": b.patience,
                "batch_size": b.batch_size,
                "max_windows": b.max_windows,
                "lr": b.lr,
                "seed": b.seed,
            },
            "it": self.it_model.state(),
            "count": self.count_model.state(),
            "idle": self.idle.to_dict(),
        }

    def _blob(self) -> bytes:
        nets = {
            k: n for k, n in (("it", self.it_model.net), ("count", self.count_model.net)) if n is not None
        }
        return net_bytes(nets) if nets else b""

    @classmethod
    def _restore(cls, state: dict[str, Any], blob: bytes) -> Self:
        bd = state["budget"]
        budget = TrainingBudget(
            hidden=int(bd["hidden"]),
            max_epochs=int(bd["max_epochs"]),
            patience=int(bd["patience"]),
            batch_size=int(bd["batch_size"]),
            max_windows=int(bd["max_windows"]),
            lr=float(bd["lr"]),
            seed=int(bd["seed"]),
        )
        nets: dict[str, Any] = {}
        if blob:
            nets = torch.load(io.BytesIO(blob), weights_only=True)
        return cls(
            it_model=ItModel.restore(state["it"], budget, nets.get("it")),
            count_model=CountModel.restore(state["count"], budget, nets.get("count")),
            idle=IdleTimeDistribution.from_dict(state["idle"]),
            budget=budget,
        )
