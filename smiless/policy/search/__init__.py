"""The strategy optimizer: choose a config (and so a cold-start case) for every function of an
app's DAG, at the least total cost per invocation, so that every root→leaf path meets the SLA.

Objective: minimise Σ_f cost_f(c_f) subject to, for every root→leaf path p,
Σ_{f∈p} latency_f(c_f) ≤ SLA. Costs are separable (see costmodel); latencies are warm stage
latencies, init being hidden by pre-warming or keep-alive. No clocks and no I/O: time comes in
as `now`, and the result carries its reasons.

- `types`: the results (`Plan`, `FunctionPlan`) and errors.
- `problem`: the candidate table (N functions × M configs, each reduced to its Pareto front).
- `fast`: the SMIless-style path search; `exact`: branch and bound, the reference.
- `plans`: a search's choice made a `Plan`; the entry points `fast_plan`, `exact_plan`.
- `choice`: `sla_aware_plan`, what the services and the simulator plan with.
- `explain`: why every other config lost.
"""

from smiless.policy.search.choice import cold_latency_s, sla_aware_plan
from smiless.policy.search.exact import DEFAULT_MAX_NODES, exact_search
from smiless.policy.search.explain import FunctionExplanation, Rejected, explain
from smiless.policy.search.fast import fast_search
from smiless.policy.search.plans import DEFAULT_HEADROOM, exact_plan, fast_plan, lowest_latency_plan
from smiless.policy.search.problem import Problem, build_problem
from smiless.policy.search.types import SLA_EPS, FunctionPlan, MissingProfileError, Plan, PlanningError

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_MAX_NODES",
    "SLA_EPS",
    "FunctionExplanation",
    "FunctionPlan",
    "MissingProfileError",
    "Plan",
    "PlanningError",
    "Problem",
    "Rejected",
    "build_problem",
    "cold_latency_s",
    "exact_plan",
    "exact_search",
    "explain",
    "fast_plan",
    "fast_search",
    "lowest_latency_plan",
    "sla_aware_plan",
]
