"""Training within a fixed CPU budget (docs/design.md §6: 2 cores): one thread, so the other
core stays with the services; bounded in Adam steps, not seconds, so that a fit is reproducible
and its cost does not depend on the machine's load. A fit is at most (len(windows) + 2)
trainings of at most max_epochs x ceil(max_windows / batch_size) steps; what that costs is
measured in docs/benchmarks/predictor.md."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from smiless.policy.predictors.lstm.network import FloatArray, TwoWindowNet
from smiless.policy.predictors.series import SlotSeries


@dataclass(frozen=True)
class TrainingBudget:
    """Bounds on one training run (see the module docstring)."""

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


def pairs(s: SlotSeries) -> tuple[FloatArray, FloatArray]:
    """ITs and, aligned with them, the count at the arrival that ended each IT."""
    return s.its.astype(np.float64), s.arrival_counts[1:].astype(np.float64)


def sliding_windows(a: FloatArray, b: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    """Row k holds a[k:k+n] (and b[k:k+n]); its target is a[k+n]. Rows: len(a) - n."""
    rows = a.size - n
    idx = np.arange(n)[None, :] + np.arange(rows)[:, None]
    return a[idx], b[idx]


def recent_windows(
    a: FloatArray, b: FloatArray, n: int, rows: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The most recent `rows` windows of length n over (a, b) and their targets a[k + n]."""
    x_a, x_b = sliding_windows(a, b, n)
    return x_a[-rows:], x_b[-rows:], a[n:][-rows:]


def pinball(q: float) -> Any:
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = target - pred
        return torch.mean(torch.maximum(q * diff, (q - 1.0) * diff))

    return loss


@dataclass
class Trained:
    net: TwoWindowNet
    epochs: int
    val_loss: float


def train(
    x_it: FloatArray,
    x_count: FloatArray,
    y: FloatArray,
    *,
    loss_fn: Any,
    budget: TrainingBudget,
    val: tuple[FloatArray, FloatArray, FloatArray] | None,
    epochs: int | None = None,
) -> Trained:
    """Adam on mini-batches. With `val`, stop after `patience` epochs without a better
    validation loss and keep the best weights; without it, run exactly `epochs` epochs."""
    rng = np.random.default_rng(budget.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(budget.seed)
        net = TwoWindowNet(budget.hidden)
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
    return Trained(net, best_epoch if v is not None else n_epochs, best_loss)


def split_index(rows: int) -> int:
    """First validation row: the last 20 % of the windows, at least 4 of them."""
    return rows - max(4, rows // 5)
