"""What `decide` is told (one `ControllerContext`) and what it answers (a `Decision`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from smiless.policy.search import Plan

DEFAULT_MISS_GRACE_S = 2.0
"""How long a pre-warmed instance waits past its predicted arrival before it is stopped."""


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What the controller needs to know of one live instance."""

    id: str
    function: str
    config: str
    ready: bool
    """False while it is starting."""
    started_at: float
    """When its start was commanded."""
    idle_since: float | None
    """None while it serves; else when it last became idle (its ready time if never used)."""
    served: int
    """Requests served since it started."""
    batch: int | None = None
    """The most requests it serves at once (its capacity per round); None: unknown, taken
    as the plan's batch on the planned config and 1 on another."""
    price_per_s: float | None = None
    """Its config's price per second; None: taken from the plan's candidates when one runs
    on that config."""


@dataclass(frozen=True, slots=True)
class ControllerContext:
    """One app at one moment, as the optimizer's controller and the simulator both see it."""

    plan: Plan
    now: float
    instances: Sequence[InstanceView]
    """The app's live instances."""
    active: bool = True
    """The app has arrival history, so the forecast is worth acting on before any request."""
    miss_grace_s: float = DEFAULT_MISS_GRACE_S
    inflight: Mapping[str, int] | None = None
    """Per function, invocations that have arrived and that it has not served yet (None:
    unknown, as 0)."""
    previous: Plan | None = None
    """The plan this one replaced at the latest arrival: it sized the requests in flight."""
    arrived: int | None = None
    """The app's requests that have arrived since `plan.now`, the burst the plan was made at
    (None: unknown)."""


@dataclass(frozen=True, slots=True)
class StartInstance:
    function: str
    config: str
    reason: str
    batch: int | None = None
    """The batch it is started for; None: the plan's."""


@dataclass(frozen=True, slots=True)
class StopInstance:
    instance_id: str
    function: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    starts: tuple[StartInstance, ...]
    stops: tuple[StopInstance, ...]
    wake_at: float
    """The next time `decide` must run when nothing else happens (inf: never)."""
