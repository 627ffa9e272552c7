"""The SMIless predictors: a two-LSTM IT model and a bucketed count model (reference §2.1-2.2).

Both read the same inputs: the last n ITs and the counts of the arrivals that ended them.
The IT model predicts the next IT (L1 loss: the conditional median), then shrinks it so it
rarely over-estimates; the count model predicts a high quantile of the next arrival's count
and rounds it up to a bucket, so it rarely under-estimates. Over-estimating the IT pre-warms
too late and under-estimating the count under-provisions: both cost SLA violations, while
the opposite errors only cost idle instance time.

Deviations from the reference artifact, each for a reason:
- The window is fed to the LSTM as a sequence of n steps of one value each; the artifact fed
  it as one step of n values, which leaves the LSTM's recurrence unused.
- Hidden size 32 rather than 128: the inputs are two scalar series of at most a few hundred
  windows, and training must fit a 2-core CPU budget (below).
- Values are log-transformed before MinMax scaling: ITs and counts are heavy-tailed, and
  the median (what L1 learns) commutes with a monotone transform, so nothing is lost.
- Early stopping watches a validation split (the last 20 % of the windows), not the
  training loss; the window length n is chosen on that same split by validation L1 (the
  artifact chose it by the over-estimation rate on the test data, which a shrink of the
  prediction can always drive to zero).
- IT correction: as the artifact, the forecast is shrunk by (1 - MAPE_train) ("mape", the
  default); MAPE >= 100 % (common for bursty ITs) makes that one slot, i.e. "be ready at
  once". We also tried calibrating the shrink on the validation split alone (the largest
  factor whose validation over-estimate share is <= a target): on the Azure benchmark it is
  worse at every target (target 0: sMAPE 0.42 with 3.5 % over-estimates, against 0.40 and
  1.0 % for "mape"), because 20 % of a day's history is too few points to calibrate a tail.
  It is kept only as a second opinion: "strict" takes the smaller of the two factors
  (validation target `it_over_target`, default 0), for apps where a late pre-warm costs more
  than idle time (benchmark: sMAPE 0.47 with 0.3 % over-estimates). "none" is the raw median.
- IT correction "record" (the default, beyond the reference): the median itself where its own
  recent record shows it does not over-estimate, else the "mape" shrink. The record is the
  median forecasts of the app's last `record_window` (50) ITs, each made from the window
  before it (one batched forward per prediction); it is clean when it holds at least
  `record_min` (20) forecasts and at most `it_over_target` (0) of them over-estimated.
  Why: the 1 - MAPE shrink is one factor for a whole fit, so a series whose median is exact
  or early (e.g. ITs of 4 and 5 slots forecast as 4) is still shrunk to 3, pre-warming a slot
  early at every arrival; its record shows there is nothing to shrink against. In the
  policy simulator this cut amber-alert's cost 4-14 % with no more SLA violations; the
  series whose medians over-estimate (bursty ITs) keep the shrink.
- Count model: trained with a pinball (quantile) loss at `count_quantile` rather than L1,
  because the median is under-estimated half of the time by construction. Buckets are
  applied at the output (ceil to a multiple of b); since ceil is monotone, the quantile of
  the bucketed count is the bucketed quantile, so this equals training on bucketed values.
  The width b in {1, 2, 4, 8} and a multiplicative margin are chosen per app on validation
  data: the cheapest pair (least mean over-provisioning) whose validation under-estimate
  share is <= `count_under_target`.

CPU budget (docs/design.md §6: 2 cores): training runs with torch.set_num_threads(1) (one core,
the other stays with the services), on at most `max_windows` of the most recent windows, for
at most `max_epochs` epochs with early stopping after `patience` epochs without improvement.
A fit is at most (len(windows) + 2) trainings of at most max_epochs x ceil(max_windows /
batch_size) Adam steps each: with the defaults 6 x 60 x 16 steps. Measured on one core of
this machine (with other work running): 9.3 s for that worst case (early stopping disabled),
0.4-4 s for the fits of the Azure benchmark (mean 3.3 s). No clock is read: the bound is in
steps, so a fit is reproducible and its cost does not depend on the machine's load.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from smiless.policy.predictors.base import Prediction, Predictor, cold_start_prediction, whole_slots
from smiless.policy.predictors.idle import IdleTimeDistribution
from smiless.policy.predictors.metrics import over_rate, smape, under_rate
from smiless.policy.predictors.series import CountsLike, SlotSeries

FloatArray = npt.NDArray[np.float64]
Correction = Literal["record", "mape", "strict", "none"]
BUCKET_WIDTHS: tuple[int, ...] = (1, 2, 4, 8)
_COUNT_MARGINS: tuple[float, ...] = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0)
_SHRINK_GRID: FloatArray = np.concatenate([np.geomspace(0.02, 1.0, 160)[:-1], [1.0]])


@dataclass(frozen=True)
class TrainingBudget:
    """Bounds on one training run; see the module docstring for what they cost."""

    hidden: int = 32
    max_epochs: int = 60
    patience: int = 6
    batch_size: int = 32
    max_windows: int = 512
    lr: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.hidden, self.max_epochs, self.patience, self.batch_size, self.max_windows) < 1:
            raise ValueError("training budget values must be >= 1")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Train and infer on one core; restore the caller's setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _TwoWindowNet(nn.Module):
    """LSTM over the IT window + LSTM over the count window, hidden states summed (the
    reference's multi-input model), then a bias-free mixing layer, tanh, and a linear head."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.it_lstm = nn.LSTM(1, hidden, batch_first=True)
        self.count_lstm = nn.LSTM(1, hidden, batch_first=True)
        self.mix = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x_it: torch.Tensor, x_count: torch.Tensor) -> torch.Tensor:
        _, (h_it, _) = self.it_lstm(x_it.unsqueeze(-1))
        _, (h_count, _) = self.count_lstm(x_count.unsqueeze(-1))
        out: torch.Tensor = self.head(torch.tanh(self.mix(h_it[-1] + h_count[-1])))
        return out.squeeze(-1)


@dataclass(frozen=True)
class _Scaler:
    """log, then MinMax onto [0, 1] over the fit history."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, values: FloatArray) -> _Scaler:
        logs = np.log(np.maximum(values, 1.0))
        return cls(float(logs.min()), float(logs.max()))

    @property
    def span(self) -> float:
        return self.hi - self.lo if self.hi > self.lo else 1.0

    def forward(self, values: FloatArray) -> FloatArray:
        return (np.log(np.maximum(values, 1.0)) - self.lo) / self.span

    def inverse(self, scaled: FloatArray) -> FloatArray:
        # Clip in log space so an untrained extrapolation cannot overflow exp.
        logs = np.clip(scaled * self.span + self.lo, -1.0, self.hi + 3.0)
        return np.asarray(np.exp(logs), dtype=np.float64)


def _pairs(s: SlotSeries) -> tuple[FloatArray, FloatArray]:
    """ITs and, aligned with them, the count at the arrival that ended each IT."""
    return s.its.astype(np.float64), s.arrival_counts[1:].astype(np.float64)


def _windows(a: FloatArray, b: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    """Row k holds a[k:k+n] (and b[k:k+n]); its target is a[k+n]. Rows: len(a) - n."""
    rows = a.size - n
    idx = np.arange(n)[None, :] + np.arange(rows)[:, None]
    return a[idx], b[idx]


def _recent(a: FloatArray, b: FloatArray, n: int, rows: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The most recent `rows` windows of length n over (a, b) and their targets a[k + n]."""
    x_a, x_b = _windows(a, b, n)
    return x_a[-rows:], x_b[-rows:], a[n:][-rows:]


def _pinball(q: float) -> Any:
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = target - pred
        return torch.mean(torch.maximum(q * diff, (q - 1.0) * diff))

    return loss


@dataclass
class _Trained:
    net: _TwoWindowNet
    epochs: int
    val_loss: float


def _train(
    x_it: FloatArray,
    x_count: FloatArray,
    y: FloatArray,
    *,
    loss_fn: Any,
    budget: TrainingBudget,
    val: tuple[FloatArray, FloatArray, FloatArray] | None,
    epochs: int | None = None,
) -> _Trained:
    """Adam on mini-batches. With `val`, stop after `patience` epochs without a better
    validation loss and keep the best weights; without it, run exactly `epochs` epochs."""
    rng = np.random.default_rng(budget.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(budget.seed)
        net = _TwoWindowNet(budget.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=budget.lr)
    t_it = torch.as_tensor(x_it, dtype=torch.float32)
    t_count = torch.as_tensor(x_count, dtype=torch.float32)
    t_y = torch.as_tensor(y, dtype=torch.float32)
    v = None if val is None else tuple(torch.as_tensor(a, dtype=torch.float32) for a in val)
    n_epochs = budget.max_epochs if epochs is None else max(1, min(epochs, budget.max_epochs))
    best_loss, best_epoch, best_state = math.inf, 0, None
    for epoch in range(1, n_epochs + 1):
        net.train()
        order = rng.permutation(len(y))
        for start in range(0, len(order), budget.batch_size):
            sel = torch.as_tensor(order[start : start + budget.batch_size])
            opt.zero_grad()
            loss = loss_fn(net(t_it[sel], t_count[sel]), t_y[sel])
            loss.backward()
            opt.step()
        if v is None:
            continue
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(v[0], v[1]), v[2]))
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
        elif epoch - best_epoch >= budget.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return _Trained(net, best_epoch if v is not None else n_epochs, best_loss)


def _infer(net: _TwoWindowNet, x_it: FloatArray, x_count: FloatArray) -> FloatArray:
    # copied: the windows may be read-only views (sliding windows), which torch warns about
    it = torch.from_numpy(np.array(x_it, dtype=np.float32))
    count = torch.from_numpy(np.array(x_count, dtype=np.float32))
    with torch.no_grad():
        out = net(it, count)
    return np.asarray(out.numpy(), dtype=np.float64)


@dataclass
class _Memo:
    """One-entry cache of the last network forward, keyed by its input window: `Predict`
    called again before a new arrival (or by a recalibrated copy) costs no forward."""

    # One attribute, replaced whole, so a concurrent reader never pairs a key with another
    # window's value.
    last: tuple[bytes, float] | None = None


def _forward_one(
    net: _TwoWindowNet,
    it_scaler: _Scaler,
    count_scaler: _Scaler,
    out: _Scaler,
    n: int,
    s: SlotSeries,
    memo: _Memo,
) -> float:
    """The network's forecast (in the units of `out`) from the last n ITs and counts of s."""
    x_it = it_scaler.forward(s.its[-n:].astype(np.float64))
    x_count = count_scaler.forward(s.arrival_counts[-n:].astype(np.float64))
    key = x_it.tobytes() + x_count.tobytes()
    last = memo.last
    if last is not None and last[0] == key:
        return last[1]
    value = float(out.inverse(_infer(net, x_it[None, :], x_count[None, :]))[0])
    memo.last = (key, value)
    return value


def _net_bytes(nets: dict[str, _TwoWindowNet]) -> bytes:
    buf = io.BytesIO()
    torch.save({k: n.state_dict() for k, n in nets.items()}, buf)
    return buf.getvalue()


def _split_index(rows: int) -> int:
    """First validation row: the last 20 % of the windows, at least 4 of them."""
    return rows - max(4, rows // 5)


@dataclass
class ItModel:
    """The SMIless IT model (one app). See the module docstring for the method."""

    windows: tuple[int, ...] = (4, 8, 12, 16)
    correction: Correction = "record"
    it_over_target: float = 0.0
    min_its: int = 32
    record_window: int = 50
    record_min: int = 20
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    # fitted state
    n_in: int = 0
    it_scaler: _Scaler | None = None
    count_scaler: _Scaler | None = None
    constant: float | None = None
    factors: dict[str, float] = field(default_factory=dict)
    val_over: dict[str, float] = field(default_factory=dict)
    val_smape: dict[str, float] = field(default_factory=dict)
    # Validation forecasts (uncorrected) and truths, kept so a correction can be recalibrated.
    val_raw: tuple[float, ...] = ()
    val_true: tuple[float, ...] = ()
    net: _TwoWindowNet | None = None
    not_fitted_reason: str = "not fitted"
    memo: _Memo = field(default_factory=_Memo, repr=False, compare=False)

    @property
    def fitted(self) -> bool:
        return self.constant is not None or self.net is not None

    def fit(self, s: SlotSeries) -> None:
        self.net, self.constant, self.not_fitted_reason = None, None, ""
        self.val_raw, self.val_true, self.memo = (), (), _Memo()
        self.factors, self.val_over, self.val_smape = {}, {}, {}
        self.it_scaler = self.count_scaler = None
        its, counts = _pairs(s)
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
        self.it_scaler, self.count_scaler = _Scaler.fit(its), _Scaler.fit(counts)
        a, b = self.it_scaler.forward(its), self.count_scaler.forward(counts)
        loss_fn = nn.L1Loss()
        # Every window length is judged on the same last n_val targets.
        n_val = max(4, min(self.budget.max_windows, its.size - max(usable)) // 5)
        best: tuple[float, int, _Trained, FloatArray, FloatArray] | None = None
        with _one_thread():
            for n in usable:
                x_it, x_count, y = _recent(a, b, n, self.budget.max_windows)
                cut = len(y) - n_val
                trained = _train(
                    x_it[:cut],
                    x_count[:cut],
                    y[:cut],
                    loss_fn=loss_fn,
                    budget=self.budget,
                    val=(x_it[cut:], x_count[cut:], y[cut:]),
                )
                if best is None or trained.val_loss < best[0] - 1e-9:
                    raw = self.it_scaler.inverse(_infer(trained.net, x_it[cut:], x_count[cut:]))
                    best = (trained.val_loss, n, trained, raw, self.it_scaler.inverse(y[cut:]))
            assert best is not None
            _, n, trained, val_raw, val_true = best
            val_true = np.round(val_true)
            x_it, x_count, y = _recent(a, b, n, self.budget.max_windows)
            final = _train(
                x_it, x_count, y, loss_fn=loss_fn, budget=self.budget, val=None, epochs=max(1, trained.epochs)
            )
            train_raw = self.it_scaler.inverse(_infer(final.net, x_it, x_count))
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
        raw = self.it_scaler.inverse(_infer(self.net, a[rows], b[rows]))
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
        return _forward_one(
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
            it_scaler=None if d["it_scaler"] is None else _Scaler(*map(float, d["it_scaler"])),
            count_scaler=None if d["count_scaler"] is None else _Scaler(*map(float, d["count_scaler"])),
            constant=None if d["constant"] is None else float(d["constant"]),
            factors={str(k): float(v) for k, v in d["factors"].items()},
            val_over={str(k): float(v) for k, v in d["val_over"].items()},
            val_smape={str(k): float(v) for k, v in d["val_smape"].items()},
            val_raw=tuple(float(x) for x in d["val_raw"]),
            val_true=tuple(float(x) for x in d["val_true"]),
            not_fitted_reason=str(d["not_fitted_reason"]),
        )
        if net_state is not None:
            m.net = _TwoWindowNet(budget.hidden)
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


@dataclass
class CountModel:
    """The SMIless count model (one app): a quantile forecast rounded up to a bucket."""

    n_in: int = 12
    count_quantile: float = 0.9
    count_under_target: float = 0.03
    min_its: int = 32
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    # fitted state
    it_scaler: _Scaler | None = None
    count_scaler: _Scaler | None = None
    constant: int | None = None
    width: int = 1
    margin: float = 1.0
    val_under: float | None = None
    val_raw: tuple[float, ...] = ()
    val_true: tuple[float, ...] = ()
    net: _TwoWindowNet | None = None
    not_fitted_reason: str = "not fitted"
    memo: _Memo = field(default_factory=_Memo, repr=False, compare=False)

    @property
    def fitted(self) -> bool:
        return self.constant is not None or self.net is not None

    def fit(self, s: SlotSeries) -> None:
        self.net, self.constant, self.not_fitted_reason = None, None, ""
        self.val_raw, self.val_true, self.memo = (), (), _Memo()
        self.it_scaler = self.count_scaler = None
        self.width, self.margin, self.val_under = 1, 1.0, None
        its, counts = _pairs(s)
        if its.size < max(self.min_its, self.n_in + 16):
            self.not_fitted_reason = f"{its.size} inter-arrivals < {max(self.min_its, self.n_in + 16)} needed"
            return
        keep = self.budget.max_windows + self.n_in
        its, counts = its[-keep:], counts[-keep:]
        if float(counts.min()) == float(counts.max()):
            self.constant, self.width, self.margin, self.val_under = int(counts[0]), 1, 1.0, 0.0
            return
        self.it_scaler, self.count_scaler = _Scaler.fit(its), _Scaler.fit(counts)
        a, b = self.it_scaler.forward(its), self.count_scaler.forward(counts)
        x_it, x_count = _windows(a, b, self.n_in)
        y = b[self.n_in :]
        cut = _split_index(len(y))
        loss_fn = _pinball(self.count_quantile)
        with _one_thread():
            trained = _train(
                x_it[:cut],
                x_count[:cut],
                y[:cut],
                loss_fn=loss_fn,
                budget=self.budget,
                val=(x_it[cut:], x_count[cut:], y[cut:]),
            )
            val_raw = self.count_scaler.inverse(_infer(trained.net, x_it[cut:], x_count[cut:]))
            final = _train(
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
        raw = _forward_one(
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
            it_scaler=None if d["it_scaler"] is None else _Scaler(*map(float, d["it_scaler"])),
            count_scaler=None if d["count_scaler"] is None else _Scaler(*map(float, d["count_scaler"])),
            constant=None if d["constant"] is None else int(d["constant"]),
            width=int(d["width"]),
            margin=float(d["margin"]),
            val_under=None if d["val_under"] is None else float(d["val_under"]),
            val_raw=tuple(float(x) for x in d["val_raw"]),
            val_true=tuple(float(x) for x in d["val_true"]),
            not_fitted_reason=str(d["not_fitted_reason"]),
        )
        if net_state is not None:
            m.net = _TwoWindowNet(budget.hidden)
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
        # A quantile bucketed up with a margin can exceed any count the app has ever had
        # (bursty apps: 26-36 forecast where the largest arrival was 16); the largest count
        # seen is already the conservative answer, so it caps the forecast.
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
        return _net_bytes(nets) if nets else b""

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
