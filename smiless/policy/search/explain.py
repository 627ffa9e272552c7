"""Why a plan chose what it chose: every other config of each function and why it lost."""

from __future__ import annotations

from dataclasses import dataclass

from smiless.policy.costmodel import Mode
from smiless.policy.search.types import SLA_EPS, FunctionPlan, Plan
from smiless.policy.workflow import timing


@dataclass(frozen=True, slots=True)
class Rejected:
    config: str
    cost: float | None
    latency_s: float | None
    mode: Mode | None
    reason: str


@dataclass(frozen=True, slots=True)
class FunctionExplanation:
    plan: FunctionPlan
    rejected: tuple[Rejected, ...]


def explain(plan: Plan) -> tuple[FunctionExplanation, ...]:
    """Per function: the plan, and every other config with its cost and why it lost."""
    t = timing(plan.dag, {f: fp.latency_s for f, fp in plan.functions.items()})
    ready, tail = t.ready_offset, t.tail
    out: list[FunctionExplanation] = []
    for f, fp in plan.functions.items():
        rejected: list[Rejected] = []
        for c in plan.candidates[f]:
            if c.config == fp.config:
                continue
            through = ready[f] + c.latency_s + tail[f]
            if through > plan.sla_s + SLA_EPS and through > plan.latency_s + SLA_EPS:
                why = f"too slow: a path through it would take {through:.3f} s > SLA {plan.sla_s:g} s"
            elif c.cost > fp.cost:
                why = f"costs {c.cost - fp.cost:.3g} more per invocation"
                if c.latency_s >= fp.latency_s:
                    why += " and is no faster"
            elif c.cost == fp.cost:
                why = "same cost, no better"
            elif plan.feasible:
                why = (
                    f"cheaper by {fp.cost - c.cost:.3g} and fits on its own; "
                    f"the {plan.method} search kept {fp.config}"
                )
            else:
                why = f"cheaper but slower ({c.latency_s:.3f} s); the SLA is unreachable: latency first"
            rejected.append(Rejected(c.config, c.cost, c.latency_s, c.mode, why))
        for name in plan.missing.get(f, ()):
            rejected.append(Rejected(name, None, None, None, "no profile for this config"))
        out.append(FunctionExplanation(fp, tuple(rejected)))
    return tuple(out)
