"""The one interface every simulated policy plugs in through.

A policy is told what the world is (`PolicyContext`: the app with its profiles and SLA, the
workload's history, the catalogue) and then, as simulated time runs, about arrivals, served
batches and finished requests. It answers two questions:

- `decide(now, instances)`: which instances to start and stop now, and when to be asked
  again: the controller's `Decision`, so the `smiless` policy is literally
  `smiless.policy.controller.decide` on its plan, as in the optimizer service;
- `shape(function)`: the config and batch size of an instance started for `function` (by the
  policy, or by the gateway when a request finds no instance: the `EnsureInstance` path).

The simulator carries decisions out and owns everything else (queues, batching, DAG order,
timing, cost). No policy sees the future unless it is the oracle, which reads the workload's
future counts on purpose.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from smiless.catalogue import HardwareConfig
from smiless.policy.controller import Decision, InstanceView
from smiless.sim.model import Noise, SimApp
from smiless.sim.workload import Workload


@dataclass(frozen=True)
class PolicyContext:
    """Everything a policy may know up front about the app it runs."""

    app: SimApp
    workload: Workload
    catalogue: Mapping[str, HardwareConfig]
    noise: Noise = field(default_factory=Noise)
    shared: MutableMapping[Any, Any] = field(default_factory=dict)
    """A cache the caller shares between policies (fitted predictors, plans of apps with the
    same template and SLA); results never depend on what is in it."""


class Policy(ABC):
    """A cold-start and configuration policy for one app."""

    name: ClassVar[str]

    def __init__(self, ctx: PolicyContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def decide(self, now: float, instances: Sequence[InstanceView]) -> Decision:
        """Starts and stops to carry out now, and when to be asked again (inf: only on events)."""

    @abstractmethod
    def shape(self, function: str) -> tuple[str, int]:
        """(config, batch size) of an instance started for `function` now."""

    def on_arrival(self, now: float, minute: int, count: int) -> None:
        """`count` invocations of the app arrive at `now`, in trace minute `minute`."""
        return None

    def on_served(self, now: float, function: str, batch: int) -> None:
        """An instance of `function` has just finished a batch of `batch` requests."""
        return None

    def on_completion(self, now: float, latency_s: float) -> None:
        """A request of the app has finished, `latency_s` after it arrived."""
        return None
