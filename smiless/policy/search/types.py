"""What a plan is: the planner's results and its errors, shared by every search."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from smiless.catalogue import Kind
from smiless.policy.costmodel import Candidate, Forecast, Mode
from smiless.policy.workflow import Dag

SLA_EPS = 1e-9
"""Latency sums within this of the SLA meet it (float sums of the same terms in another order)."""


class PlanningError(ValueError):
    """The inputs cannot be planned; the message names what is wrong or missing."""


class MissingProfileError(PlanningError):
    """Functions with no profile for any config in the catalogue: planning them would mean
    making numbers up, so the planner refuses and names them."""

    def __init__(self, functions: Iterable[str]) -> None:
        self.functions = tuple(functions)
        super().__init__(f"no profile for any config of: {', '.join(self.functions)}")


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """One function's part of a plan: what the controller starts, when, and for how long."""

    function: str
    config: str
    kind: Kind
    mode: Mode
    latency_s: float
    """Planned stage latency (the share of the SLA this function uses)."""
    cost: float
    """Per app invocation."""
    ready_offset_s: float
    """Its inputs arrive this long after the request (the longest upstream latency)."""
    downstream_s: float
    """The longest planned latency after it finishes, to any leaf: what the gateway holds back
    of the SLA for the stages after it."""
    init_s: float
    exec_s: float
    prewarm_window_s: float
    """Idle gap between serving and the next pre-warm; 0 when kept alive."""
    prewarm_at_s: float | None
    """When to start the next instance (now + IT + ready offset - init); None when it is kept
    warm, inf when no arrival is predicted."""
    keep_alive_s: float
    """How long to keep instances after serving; 0 = stop after serving."""
    stop_after_serving: bool
    batch: int
    instances: int
    instance_config: str
    init_hidden: bool
    """Init fits within the upstream latency: started when the request arrives, this stage is
    ready before its inputs, so it needs no forecast to avoid a cold start (the cascade)."""


@dataclass(frozen=True)
class Plan:
    """A whole app's plan with its reasons. `functions` is in topological order."""

    method: str
    sla_s: float
    feasible: bool
    reason: str
    cost: float
    """Per app invocation: Σ of the functions' costs."""
    latency_s: float
    """End to end: the longest root→leaf path."""
    critical_path: tuple[str, ...]
    functions: dict[str, FunctionPlan]
    optimal: bool
    """Proven minimal (exact search that finished within its node budget)."""
    nodes: int
    """Search effort: partial plans examined."""
    paths: tuple[tuple[str, ...], ...]
    """The workflow manager's decomposition (fast search)."""
    forecast: Forecast
    now: float
    candidates: dict[str, tuple[Candidate, ...]] = field(repr=False)
    """Every config evaluated per function, for ExplainPlan."""
    missing: dict[str, tuple[str, ...]] = field(repr=False)
    """Per function, catalogue configs it has no profile for."""
    dag: Dag = field(repr=False)
    target_s: float | None = None
    """The end-to-end latency it was planned to: inside the SLA by the planner's headroom
    (`DEFAULT_HEADROOM`); None: the SLA itself. Whatever changes the plan's stage latencies
    afterwards (the controller keeping a slower instance) must stay within it too."""

    @property
    def latency_target_s(self) -> float:
        return self.sla_s if self.target_s is None else self.target_s

    @property
    def configs(self) -> dict[str, str]:
        return {f: p.config for f, p in self.functions.items()}
