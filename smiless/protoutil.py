"""Seconds <-> `google.protobuf.Duration` / `Timestamp`, and a status code carried as an int
field <-> `grpc.StatusCode`: the one way every module does them."""

from __future__ import annotations

import math
from typing import Protocol

import grpc

_STATUS = {c.value[0]: c for c in grpc.StatusCode}


def status_code(value: int) -> grpc.StatusCode:
    """The gRPC status whose number a message carries (UNKNOWN for a number there is none of)."""
    return _STATUS.get(value, grpc.StatusCode.UNKNOWN)


class _Nanos(Protocol):
    def FromNanoseconds(self, nanos: int) -> None: ...

    def ToNanoseconds(self) -> int: ...


def set_seconds(msg: _Nanos, seconds: float) -> None:
    """Set a Duration or Timestamp from seconds (negative clamps to 0; inf/NaN leaves it unset)."""
    if math.isfinite(seconds):
        msg.FromNanoseconds(max(0, round(seconds * 1e9)))


def get_seconds(msg: _Nanos) -> float:
    return msg.ToNanoseconds() / 1e9
