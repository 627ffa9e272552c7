"""The demo's workload and the steps around its replay that are not presentation: loading
the window's history into the predictor, waiting for the stack to warm the apps, the limits
of the stack the demo starts.

The window (fixed, so runs compare): trace minutes 600-609 (10:00-10:10 of the sample's day),
one trace minute = 2 s, invocations of a minute sent together. The rows were picked from
the shipped Azure sample (`smiless/data/azure2019`) by this rule: a mean of 0.5-3 invocations
per minute over the day, invoked in at least 60 % of its minutes, at most 12 in any minute
(what two cores can serve for three apps at once), a count series not identical to an
earlier row's; of the nine such rows (file rows 54, 139, 202, 265, 575, 711, 881, 1055,
1166), 139, 202 and 711 are (nearly) constant-rate timers, so the demo takes the bursty
one and the first two irregular ones:

| app             | file row | window counts (minutes 600-609) | invocations |
|-----------------|----------|---------------------------------|-------------|
| voice-assistant | 54       | 1 2 3 0 8 1 2 3 0 8             | 28          |
| amber-alert     | 575      | 0 1 1 1 3 1 1 2 2 1             | 13          |
| image-query     | 265      | 2 1 2 1 1 1 2 2 0 2             | 14          |
"""

from __future__ import annotations

import os
import time
from typing import Any

import grpc

from smiless import appspec, security
from smiless.config import Settings
from smiless.protoutil import set_seconds
from smiless.stack import health_status
from smiless.trace import arrivals_from_counts
from smiless.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, predictor_pb2, predictor_pb2_grpc

DEMO_ROWS: dict[str, str] = {
    "voice-assistant": "07adcb93d6bbd39b5eccc1e9c0dca72dd1d10fd61903a86216be0cbf5ed0cb1d",
    "amber-alert": "67bdfc54923b3395e46e332482025267ba0061d1afb12ac4973d25b9c85d0e39",
    "image-query": "650fc8f7b366568775b88fcd98c6118f8f1911341429777687b73da93a070605",
}
DEMO_START_MINUTE = 600
DEMO_MINUTES = 10
DEMO_LEAD_IN = 90


def models_of(specs: list[appspec.AppSpec]) -> list[str]:
    """Every model the apps use, once, in the order they first appear."""
    out: list[str] = []
    for spec in specs:
        for f in spec.functions:
            if f.model not in out:
                out.append(f.model)
    return out


def load_history(
    address: str, rows: dict[str, Any], slot_seconds: float, start_minute: int, history_minutes: int
) -> dict[str, int]:
    """Each app's trace minutes before the window as its arrival history, ending now."""
    loaded: dict[str, int] = {}
    first = max(0, start_minute - history_minutes)
    with grpc.insecure_channel(address) as ch:
        stub = predictor_pb2_grpc.PredictorStub(ch)
        for name, fn in rows.items():
            counts = fn.counts[first:start_minute]
            start = time.time() - len(counts) * slot_seconds
            req = predictor_pb2.LoadHistoryRequest(app=name, replace=True)
            for t in arrivals_from_counts(counts, slot_seconds, start=start):
                set_seconds(req.arrivals.add(), float(t))
            loaded[name] = stub.LoadHistory(req, timeout=60).loaded
    return loaded


def wait_ready(settings: Settings, address: str, specs: list[appspec.AppSpec], limit_s: float) -> str:
    """Wait for the controller's pre-warming to settle: until every function of the apps has
    a READY instance, or some are READY and none is still STARTING (an app the controller
    does not warm would otherwise hold the others until their keep-alive expires), or limit_s
    passes. Say which, and how long it took."""
    t0 = time.monotonic()
    names = {s.name for s in specs}
    wanted = {(s.name, f.name) for s in specs for f in s.functions}
    ready: set[tuple[str, str]] = set()
    with security.gateway_channel(settings, address) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        while time.monotonic() - t0 < limit_s:
            status = stub.GetStatus(gateway_pb2.GetStatusRequest(), timeout=10)
            mine = [i for a in status.apps if a.name in names for i in a.instances]
            ready = {(i.app, i.function) for i in mine if i.state == common_pb2.INSTANCE_STATE_READY}
            starting = sum(1 for i in mine if i.state == common_pb2.INSTANCE_STATE_STARTING)
            waited = time.monotonic() - t0
            if wanted <= ready:
                return f"every function ready after {waited:.0f} s"
            if ready and not starting:
                have = f"{len(wanted & ready)} of {len(wanted)}"
                return f"{have} functions ready and none starting after {waited:.0f} s"
            time.sleep(1.0)
    return f"{len(wanted & ready)} of {len(wanted)} functions ready after {limit_s:g} s; replaying anyway"


def demo_env(settings: Settings, specs: list[appspec.AppSpec]) -> dict[str, str]:
    """Settings of the stack the demo starts: room for one instance of every function of
    the apps plus one scale-out each, unless SMILESS_MAX_INSTANCES says otherwise (below
    that, the controller would evict one app's warm instances for another's, every slot)."""
    if "SMILESS_MAX_INSTANCES" in os.environ:
        return {}
    wanted = 2 * sum(len(s.functions) for s in specs)
    return {"SMILESS_MAX_INSTANCES": str(max(settings.max_instances, wanted))}


def gateway_serving(address: str) -> bool:
    """A stack already serves on the configured gateway address (the demo then uses it)."""
    return health_status(address, 1.0) == "SERVING"
