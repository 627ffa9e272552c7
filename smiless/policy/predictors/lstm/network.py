"""The network both SMIless models share, its input scaling, and one-core inference."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from smiless.policy.predictors.series import SlotSeries

FloatArray = npt.NDArray[np.float64]


@contextmanager
def one_thread() -> Iterator[None]:
    """Train and infer on one core; restore the caller's setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TwoWindowNet(nn.Module):
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
class Scaler:
    """log, then MinMax onto [0, 1] over the fit history."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, values: FloatArray) -> Scaler:
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


def infer(net: TwoWindowNet, x_it: FloatArray, x_count: FloatArray) -> FloatArray:
    # copied: the windows may be read-only views (sliding windows), which torch warns about
    it = torch.from_numpy(np.array(x_it, dtype=np.float32))
    count = torch.from_numpy(np.array(x_count, dtype=np.float32))
    with torch.no_grad():
        out = net(it, count)
    return np.asarray(out.numpy(), dtype=np.float64)


@dataclass
class Memo:
    """One-entry cache of the last network forward, keyed by its input window: `Predict`
    called again before a new arrival (or by a recalibrated copy) costs no forward."""

    # One attribute, replaced whole, so a concurrent reader never pairs a key with another
    # window's value.
    last: tuple[bytes, float] | None = None


def forward_one(
    net: TwoWindowNet,
    it_scaler: Scaler,
    count_scaler: Scaler,
    out: Scaler,
    n: int,
    s: SlotSeries,
    memo: Memo,
) -> float:
    """The network's forecast (in the units of `out`) from the last n ITs and counts of s."""
    x_it = it_scaler.forward(s.its[-n:].astype(np.float64))
    x_count = count_scaler.forward(s.arrival_counts[-n:].astype(np.float64))
    key = x_it.tobytes() + x_count.tobytes()
    last = memo.last
    if last is not None and last[0] == key:
        return last[1]
    value = float(out.inverse(infer(net, x_it[None, :], x_count[None, :]))[0])
    memo.last = (key, value)
    return value


def net_bytes(nets: dict[str, TwoWindowNet]) -> bytes:
    buf = io.BytesIO()
    torch.save({k: n.state_dict() for k, n in nets.items()}, buf)
    return buf.getvalue()
