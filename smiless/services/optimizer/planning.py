"""Between the planner's results (smiless.policy.search) and the optimizer's messages."""

from __future__ import annotations

import math

from smiless.policy.costmodel import Mode
from smiless.policy.search import FunctionExplanation, Plan
from smiless.protoutil import set_seconds
from smiless.v1 import common_pb2, optimizer_pb2

MODE_TO_PROTO = {
    Mode.PREWARM: common_pb2.COLD_START_MODE_PREWARM,
    Mode.KEEP_ALIVE: common_pb2.COLD_START_MODE_KEEP_ALIVE,
    Mode.SCALED: common_pb2.COLD_START_MODE_SCALED,
}


def plan_to_proto(app: str, plan: Plan, planned_at: float) -> optimizer_pb2.AppPlan:
    msg = optimizer_pb2.AppPlan(
        app=app,
        predicted_cost=plan.cost,
        feasible=plan.feasible,
        reason=plan.reason,
        forecast_count=plan.forecast.count,
        method=plan.method,
        critical_path=list(plan.critical_path),
    )
    set_seconds(msg.predicted_latency, plan.latency_s)
    set_seconds(msg.forecast_it, plan.forecast.it_s)
    msg.planned_at.FromNanoseconds(round(planned_at * 1e9))
    for f, fp in plan.functions.items():
        out = msg.functions.add(
            function=f,
            config=fp.config,
            mode=MODE_TO_PROTO[fp.mode],
            batch_size=fp.batch,
            instances=fp.instances,
            cost=fp.cost,
            stop_after_serving=fp.stop_after_serving,
            instance_config=fp.instance_config,
            init_hidden=fp.init_hidden,
        )
        set_seconds(out.prewarm_window, fp.prewarm_window_s)
        set_seconds(out.keep_alive, fp.keep_alive_s)
        set_seconds(out.latency, fp.latency_s)
        set_seconds(out.ready_offset, fp.ready_offset_s)
        set_seconds(out.downstream, fp.downstream_s)
        set_seconds(out.init, fp.init_s)
        if fp.prewarm_at_s is not None and math.isfinite(fp.prewarm_at_s):
            out.prewarm_at.FromNanoseconds(round(fp.prewarm_at_s * 1e9))
    return msg


def explanation_to_proto(
    items: tuple[FunctionExplanation, ...], plan: optimizer_pb2.AppPlan
) -> list[optimizer_pb2.FunctionExplanation]:
    chosen = {fp.function: fp for fp in plan.functions}
    out = []
    for item in items:
        fe = optimizer_pb2.FunctionExplanation(chosen=chosen[item.plan.function])
        for r in item.rejected:
            ro = fe.rejected.add(
                config=r.config,
                mode=MODE_TO_PROTO[r.mode] if r.mode is not None else common_pb2.COLD_START_MODE_UNSPECIFIED,
                cost=r.cost if r.cost is not None else 0.0,
                reason=r.reason,
            )
            if r.latency_s is not None:
                set_seconds(ro.latency, r.latency_s)
        out.append(fe)
    return out
