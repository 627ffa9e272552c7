"""The SLA-aware choice of the IT to plan for: the predictor's shrunk IT, or its median IT
where even a cold start meets the SLA."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from smiless.catalogue import HardwareConfig
from smiless.policy.costmodel import Forecast
from smiless.policy.profile import DEFAULT_K_SIGMA, FunctionProfiles
from smiless.policy.search.plans import fast_plan
from smiless.policy.search.types import SLA_EPS, Plan

_COLD_ROUNDS = 4
"""Plans `sla_aware_plan` tries for the median IT before it keeps the shrunk IT's."""


def cold_latency_s(plan: Plan) -> float:
    """End-to-end latency of a request that finds no instance warm: every stage is started
    when it arrives (the controller starts at once a stage whose inputs are due sooner than
    its init) and serves at the later of its init (μ + kσ) and its inputs."""
    finish: dict[str, float] = {}
    for f in plan.dag.functions:  # topological order
        fp = plan.functions[f]
        inputs = max((finish[u] for u in plan.dag.parents[f]), default=0.0)
        finish[f] = max(fp.init_s, inputs) + fp.latency_s
    return max(finish.values())


def _cost_at(plan: Plan, it_s: float) -> float:
    """Per invocation if arrivals come every `it_s`: a kept-alive function stays up through
    each gap (its cost scales with the IT), a stopped one pays one lifetime per arrival."""
    return sum(
        fp.cost if fp.stop_after_serving else fp.cost * it_s / plan.forecast.it_s
        for fp in plan.functions.values()
    )


def _missed_cost(plan: Plan) -> float:
    """Per invocation if every pre-warm misses its arrival: a stopped function pays a second
    lifetime (the wasted pre-warm, or the start on demand that replaces it)."""
    return sum(fp.cost * (2.0 if fp.stop_after_serving else 1.0) for fp in plan.functions.values())


def sla_aware_plan(
    functions: Iterable[str],
    edges: Iterable[tuple[str, str]],
    sla_s: float,
    profiles: Mapping[str, FunctionProfiles],
    catalogue: Mapping[str, HardwareConfig],
    forecast: Forecast,
    now: float = 0.0,
    *,
    top_k: int = 1,
    k_sigma: float = DEFAULT_K_SIGMA,
    headroom: float = 0.0,
) -> Plan:
    """`fast_plan` (same arguments), with the IT the SLA can afford.

    The SMIless predictor shrinks its median IT (`Forecast.it_median_s`) so that it rarely
    over-estimates, because a pre-warm timed by an over-estimate comes late and the request
    meets a cold start. Where the plan for the median IT meets its latency target even from
    cold (`cold_latency_s`), a late pre-warm costs no violation and the shrink buys only idle
    time (a bursty app's shrunk IT is one slot: kept warm for good): that plan is taken if,
    even with every pre-warm missing its arrival, it costs less than the shrunk IT's plan at
    the median's pace (the median is only a median). Otherwise, or without a median, the plan
    for the shrunk IT."""
    functions, edges = list(functions), list(edges)

    def plan_for(fc: Forecast, sla: float) -> Plan:
        return fast_plan(
            functions, edges, sla, profiles, catalogue, fc, now, top_k=top_k, k_sigma=k_sigma,
            headroom=headroom,
        )  # fmt: skip

    safe = plan_for(forecast, sla_s)
    median = forecast.it_median_s
    if median is None or median <= forecast.it_s or not safe.feasible:
        return safe
    # The median's plan, made faster until its cold latency fits the safe plan's target: each
    # round plans to a warm latency below the last one's by what its cold start overshot.
    target = safe.latency_target_s
    bold_forecast = replace(forecast, it_s=median)
    tighter = sla_s
    for _ in range(_COLD_ROUNDS):
        bold = plan_for(bold_forecast, tighter)
        if not bold.feasible:
            break
        cold = cold_latency_s(bold)
        if cold <= target + SLA_EPS:
            if _missed_cost(bold) >= _cost_at(safe, median):
                break  # made so fast that it would not pay for itself if its pre-warms missed
            why = (
                f"{bold.reason}; planned for the median IT {median:g} s, not the shrunk {forecast.it_s:g} s: "
                f"a cold start meets the target {target:.3f} s too ({cold:.3f} s)"
            )
            return replace(bold, sla_s=sla_s, reason=why, target_s=bold.latency_target_s)
        need = bold.latency_s - (cold - target) - SLA_EPS  # warm latency must drop by the overshoot
        if need <= 0.0:
            break
        tighter = need / (1.0 - headroom)
    return safe
