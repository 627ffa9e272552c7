"""Seconds <-> `google.protobuf.Duration` / `Timestamp`, the one way every module does it."""

from __future__ import annotations

import math
from typing import Protocol


class _Nanos(Protocol):
    def FromNanoseconds(self, nanos: int) -> None: ...

    def ToNanoseconds(self) -> int: ...


def set_seconds(msg: _Nanos, seconds: float) -> None:
    """Set a Duration or Timestamp from seconds (negative clamps to 0; inf/NaN leaves it unset)."""
    if math.isfinite(seconds):
        msg.FromNanoseconds(max(0, round(seconds * 1e9)))


def get_seconds(msg: _Nanos) -> float:
    return msg.ToNanoseconds() / 1e9
