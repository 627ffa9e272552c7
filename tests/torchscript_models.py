"""User models for tests: small TorchScript files saved with their smiless contract."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from smiless import zoo
from smiless.worker import models

VEC = zoo.TensorSpec("float32", (4,))


class Affine(nn.Module):
    """y = 2x + 1: a result the test can compute itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x + 1


class Busy(nn.Module):
    """Spins for x[0, 0] matrix products: a request whose duration the test chooses."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.eye(256) * 0.5
        y = torch.ones(256, 256)
        for _ in range(int(x[0, 0])):
            y = torch.tanh(y @ w)
        return x + y[0, 0]


class WrongShape(nn.Module):
    """Breaks its own contract: one row for the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(0, keepdim=True)


def save(module: nn.Module, path: Path, max_batch: int = 8) -> str:
    """Script `module`, save it with the VEC -> VEC contract; return its model name."""
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still supported
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    return models.save_torchscript(scripted, path, VEC, VEC, max_batch=max_batch)
