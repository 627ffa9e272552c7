"""The warm window: when, and how many, instances of a function the plan wants up."""

from __future__ import annotations

import math
from dataclasses import dataclass

from smiless.policy.search import FunctionPlan, Plan


@dataclass(frozen=True, slots=True)
class WarmWindow:
    start: float
    end: float
    count: int


def warm_window(plan: Plan, fp: FunctionPlan, *, active: bool, miss_grace_s: float) -> WarmWindow:
    """Stopped after serving: from the pre-warm time to the predicted inputs' service plus a
    grace; kept alive: from now to that service plus the keep-alive. None without history."""
    return WarmWindow(*window_bounds(plan, fp, active, miss_grace_s))


def window_bounds(
    plan: Plan, fp: FunctionPlan, active: bool, miss_grace_s: float
) -> tuple[float, float, int]:
    """`warm_window` as a plain tuple: `decide` needs one per function at every simulator event."""
    it = plan.forecast.it_s
    if not active or not math.isfinite(it):
        return math.inf, -math.inf, 0
    served_by = plan.now + it + fp.ready_offset_s + fp.latency_s
    if fp.stop_after_serving:
        start = fp.prewarm_at_s if fp.prewarm_at_s is not None else served_by - fp.exec_s
        # at least an init (a late arrival would pay a restart and a cold start) and the
        # predictor's idle-time tail (a late arrival still finds its instance)
        grace = max(miss_grace_s, fp.init_s, plan.forecast.keep_alive_s - it)
        return start, served_by + grace, fp.instances
    return -math.inf, served_by + fp.keep_alive_s, fp.instances
