"""The SMIless count model: a high quantile of the next arrival's count (pinball loss, since a
median under-estimates half of the time), rounded up to a bucket with a margin. The bucket
width and margin are chosen per app on validation data: the cheapest pair whose
under-estimate share is at most `count_under_target`. Ceil is monotone, so bucketing the
output equals training on bucketed values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from smiless.policy.predictors.lstm.network import (
    FloatArray,
    Memo,
    Scaler,
    TwoWindowNet,
    forward_one,
    infer,
    one_thread,
)
from smiless.policy.predictors.lstm.training import (
    TrainingBudget,
    pairs,
    pinball,
    sliding_windows,
    split_index,
    train,
)
from smiless.policy.predictors.metrics import under_rate
from smiless.policy.predictors.series import SlotSeries

BUCKET_WIDTHS: tuple[int, ...] = (1, 2, 4, 8)
_COUNT_MARGINS: tuple[float, ...] = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0)


@dataclass
class CountModel:
    """The SMIless count model (one app): a quantile forecast rounded up to a bucket."""

    n_in: int = 12
    count_quantile: float = 0.9
    count_under_target: float = 0.03
    min_its: int = 32
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    # fitted state
    it_scaler: Scaler | None = None
    count_scaler: Scaler | None = None
    constant: int | None = None
    width: int = 1
    margin: float = 1.0
    val_under: float | None = None
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
        self.it_scaler = self.count_scaler = None
        self.width, self.margin, self.val_under = 1, 1.0, None
        its, counts = pairs(s)
        if its.size < max(self.min_its, self.n_in + 16):
            self.not_fitted_reason = f"{its.size} inter-arrivals < {max(self.min_its, self.n_in + 16)} needed"
            return
        keep = self.budget.max_windows + self.n_in
        its, counts = its[-keep:], counts[-keep:]
        if float(counts.min()) == float(counts.max()):
            self.constant, self.width, self.margin, self.val_under = int(counts[0]), 1, 1.0, 0.0
            return
        self.it_scaler, self.count_scaler = Scaler.fit(its), Scaler.fit(counts)
        a, b = self.it_scaler.forward(its), self.count_scaler.forward(counts)
        x_it, x_count = sliding_windows(a, b, self.n_in)
        y = b[self.n_in :]
        cut = split_index(len(y))
        loss_fn = pinball(self.count_quantile)
        with one_thread():
            trained = train(
                x_it[:cut],
                x_count[:cut],
                y[:cut],
                loss_fn=loss_fn,
                budget=self.budget,
                val=(x_it[cut:], x_count[cut:], y[cut:]),
            )
            val_raw = self.count_scaler.inverse(infer(trained.net, x_it[cut:], x_count[cut:]))
            final = train(
                x_it, x_count, y, loss_fn=loss_fn, budget=self.budget, val=None, epochs=max(1, trained.epochs)
            )
        val_true = counts[self.n_in :][cut:]
        self.val_raw, self.val_true = tuple(map(float, val_raw)), tuple(map(float, val_true))
        self.width, self.margin, self.val_under = _choose_bucket(val_raw, val_true, self.count_under_target)
        self.net = final.net

    def forecast(self, s: SlotSeries) -> int | None:
        if self.constant is not None:
            return self.constant
        if self.net is None or self.it_scaler is None or self.count_scaler is None or s.its.size < self.n_in:
            return None
        raw = forward_one(
            self.net, self.it_scaler, self.count_scaler, self.count_scaler, self.n_in, s, self.memo
        )
        return int(_bucket(np.array([raw]), self.width, self.margin)[0])

    def recalibrated(self, count_under_target: float) -> CountModel:
        """A copy sharing the network, with bucket and margin chosen for another target."""
        m = replace(self, count_under_target=count_under_target)
        if m.net is not None and m.val_raw:
            m.width, m.margin, m.val_under = _choose_bucket(
                np.asarray(m.val_raw), np.asarray(m.val_true), count_under_target
            )
        return m

    def state(self) -> dict[str, Any]:
        return {
            "n_in": self.n_in,
            "count_quantile": self.count_quantile,
            "count_under_target": self.count_under_target,
            "min_its": self.min_its,
            "it_scaler": None if self.it_scaler is None else [self.it_scaler.lo, self.it_scaler.hi],
            "count_scaler": None
            if self.count_scaler is None
            else [self.count_scaler.lo, self.count_scaler.hi],
            "constant": self.constant,
            "width": self.width,
            "margin": self.margin,
            "val_under": self.val_under,
            "val_raw": list(self.val_raw),
            "val_true": list(self.val_true),
            "not_fitted_reason": self.not_fitted_reason,
        }

    @classmethod
    def restore(
        cls, d: dict[str, Any], budget: TrainingBudget, net_state: dict[str, Any] | None
    ) -> CountModel:
        m = cls(
            n_in=int(d["n_in"]),
            count_quantile=float(d["count_quantile"]),
            count_under_target=float(d["count_under_target"]),
            min_its=int(d["min_its"]),
            budget=budget,
            it_scaler=None if d["it_scaler"] is None else Scaler(*map(float, d["it_scaler"])),
            count_scaler=None if d["count_scaler"] is None else Scaler(*map(float, d["count_scaler"])),
            constant=None if d["constant"] is None else int(d["constant"]),
            width=int(d["width"]),
            margin=float(d["margin"]),
            val_under=None if d["val_under"] is None else float(d["val_under"]),
            val_raw=tuple(float(x) for x in d["val_raw"]),
            val_true=tuple(float(x) for x in d["val_true"]),
            not_fitted_reason=str(d["not_fitted_reason"]),
        )
        if net_state is not None:
            m.net = TwoWindowNet(budget.hidden)
            m.net.load_state_dict(net_state)
            m.net.eval()
        return m


def _bucket(raw: FloatArray, width: int, margin: float) -> npt.NDArray[np.int64]:
    """Round margin·raw up to a multiple of the bucket width (at least one bucket).

    Example: raw 5.2, width 4, margin 1.0 -> 8; width 1 -> 6.
    """
    # The small tolerance keeps an exact float like 4.0000001 in the bucket it names.
    return (np.maximum(1, np.ceil(raw * margin / width - 1e-6)) * width).astype(np.int64)


def _choose_bucket(raw: FloatArray, actual: FloatArray, target: float) -> tuple[int, float, float]:
    """Cheapest (width, margin) with validation under-estimate share <= target.

    Cost is the mean over-provisioning ratio pred/actual. If no pair meets the target, the
    pair with the fewest under-estimates (then the cheapest) wins.
    """
    best: tuple[bool, float, float, int, float] | None = None
    for width in BUCKET_WIDTHS:
        for margin in _COUNT_MARGINS:
            pred = _bucket(raw, width, margin)
            under = under_rate(pred, actual)
            cost = float(np.mean(pred / actual))
            key = (under > target, under if under > target else 0.0, cost, width, margin)
            if best is None or key[:3] < best[:3]:
                best = key
    assert best is not None
    width, margin = best[3], best[4]
    return width, margin, under_rate(_bucket(raw, width, margin), actual)
