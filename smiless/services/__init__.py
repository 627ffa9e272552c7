"""The four control-plane services; each runs in the shell of smiless/server.py."""

from __future__ import annotations

from smiless.config import Settings
from smiless.server import Service
from smiless.store import Store


def build(name: str, settings: Settings, store: Store) -> Service:
    """Construct the named service (imports lazily: each service needs only its own code)."""
    if name == "gateway":
        from smiless.services.gateway.service import GatewayService

        return GatewayService(settings, store)
    if name == "optimizer":
        from smiless.services.optimizer.service import OptimizerService

        return OptimizerService(settings, store)
    if name == "profiler":
        from smiless.services.profiler.service import ProfilerService

        return ProfilerService(settings, store)
    if name == "predictor":
        from smiless.services.predictor.service import PredictorService

        return PredictorService(settings, store)
    raise ValueError(f"unknown service {name!r}")
