"""Small helpers the services share."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from smiless.server import RpcError
from smiless.store import Store
from smiless.v1 import gateway_pb2


async def require_app(store: Store, name: str) -> gateway_pb2.App:
    """The stored app, or INVALID_ARGUMENT (empty name) / NOT_FOUND."""
    if not name:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "app: required")
    app = await store.get_app(name)
    if app is None:
        raise RpcError(grpc.StatusCode.NOT_FOUND, f"app: no app named {name!r}")
    return app


def seconds(ts: Timestamp) -> float | None:
    """Epoch seconds of a Timestamp, None when unset."""
    return ts.ToNanoseconds() / 1e9 if ts.seconds or ts.nanos else None
