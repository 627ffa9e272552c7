"""The auto-scaler: batch size and instance count for G concurrent invocations.

For G invocations that arrive together, serve them as `n = ⌈G/B⌉` instances of batch B, each
on the cheapest config whose resource covers `r(B)` (the inference model's inverse) within
the latency budget T, minimising `n·U(r(B))`.

The reference bisects on `cost(B) < overall`, which is not monotone in B (both ⌈G/B⌉ and the
price ladder step), and never updates `overall`, so it can stop at an arbitrary B. We bisect
only where bisection is sound: for each price rung R, "batch B fits on R within T" is
monotone in B (T(B, R) never falls as B grows), so bisection finds the largest batch B_R that
rung serves. On a fixed rung a larger batch never needs more instances, so the optimum is the
cheapest of the per-rung maxima; that is exact, in O(M log G).

Worked example (imagerecognition on CPU, clamped: T(B, r) = 0.0534·B/r + 0.208 s), G = 10,
T = 0.5 s: cpu-1 fits B = 5 (0.475 s) → 2 × cpu-1 = 0.068 $/h; cpu-2 fits B = 10 → 1 × cpu-2 =
0.068 $/h; a tie, broken towards fewer instances (fewer starts to go wrong), so one cpu-2
instance at batch 10.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.profile import InferenceModel

_TIE = 1.0 + 1e-9
"""Costs within this ratio tie (2 x 0.034/3600 and 0.068/3600 differ in the last bit)."""


@dataclass(frozen=True, slots=True)
class ResourceLadder:
    """The configs of one kind that are worth buying, by ascending resource and price.

    A config is dropped when a config with at least as much resource costs no more, so after
    construction prices rise strictly with resource and "the cheapest config with resource ≥ r"
    is simply the first rung at or above r."""

    kind: Kind
    names: tuple[str, ...]
    resources: tuple[float, ...]
    prices: tuple[float, ...]
    """Per second."""

    @classmethod
    def of(cls, configs: Iterable[HardwareConfig], kind: Kind) -> ResourceLadder:
        ordered = sorted(
            (c for c in configs if c.kind is kind), key=lambda c: (-c.resource, c.price_per_second)
        )
        kept: list[HardwareConfig] = []
        for c in ordered:  # from the largest down: keep a rung only if cheaper than all above it
            if not kept or c.price_per_second < kept[-1].price_per_second:
                if kept and c.resource == kept[-1].resource:
                    continue
                kept.append(c)
        kept.reverse()
        return cls(
            kind,
            tuple(c.name for c in kept),
            tuple(c.resource for c in kept),
            tuple(c.price_per_second for c in kept),
        )

    def rung_at_least(self, r: float) -> int | None:
        """Index of the cheapest rung with resource ≥ r, or None when r exceeds the largest."""
        i = bisect.bisect_left(self.resources, r)
        return i if i < len(self.resources) else None


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """How to serve G concurrent invocations; `reason` says why in one line."""

    concurrency: int
    batch: int
    instances: int
    config: str
    resource: float
    """The chosen config's resource (cores or GPU %)."""
    needed_resource: float
    """r(B): the least resource the inverse asks for at this batch; `resource` rounds it up."""
    latency_s: float
    """T(batch, resource): the time one instance takes for its batch."""
    price_per_second: float
    """Of all `instances` together."""
    feasible: bool
    reason: str


def scale(g: int, model: InferenceModel, budget_s: float, ladder: ResourceLadder) -> ScaleDecision:
    """Choose (B, n, config) for `g` invocations arriving together, each answered within
    `budget_s` seconds of inference, at the least `n · price`. Ties go to fewer instances.

    When no rung serves even a batch of 1 within the budget, the result is infeasible and
    serves each invocation alone on the fastest rung (the least latency available)."""
    if g <= 0:
        return ScaleDecision(0, 0, 0, "", 0.0, 0.0, 0.0, 0.0, True, "no invocations predicted")
    if not ladder.names:
        return ScaleDecision(
            g, 0, 0, "", 0.0, 0.0, 0.0, 0.0, False, f"no {ladder.kind.value} config to scale on"
        )
    lam, alpha, beta, gamma = model.lam, model.alpha, model.beta, model.gamma
    room = budget_s * _TIE - gamma  # a budget met to the last bit is met: T(1, r) as budget must fit r
    best_cost = float("inf")
    best_rung = -1
    best_n = 0
    prices = ladder.prices
    for j, res in enumerate(ladder.resources):
        price = prices[j]
        if price > best_cost * _TIE:  # rungs above are dearer still, and any needs n >= 1
            break
        per = lam * (alpha / res + beta)  # seconds each request adds to a batch on this rung
        if per > room:  # not even a batch of one fits
            continue
        # Largest feasible batch on this rung: bisection on the monotone predicate B·per <= room.
        if g * per <= room:
            b = g
        else:
            lo, hi = 1, g  # feasible(lo), not feasible(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if mid * per <= room:
                    lo = mid
                else:
                    hi = mid
            b = lo
        n = -(-g // b)
        cost = n * price
        if cost * _TIE < best_cost or (cost <= best_cost * _TIE and n < best_n):
            best_cost, best_rung, best_n = cost, j, n
        if n == 1:
            break
    if best_rung < 0:
        j = len(ladder.names) - 1
        res = ladder.resources[j]
        return ScaleDecision(
            g,
            1,
            g,
            ladder.names[j],
            res,
            model.resource_for(1, budget_s) or float("inf"),
            model.latency(1, res),
            g * prices[j],
            False,
            f"no {ladder.kind.value} config serves one request within {budget_s:.3g} s; "
            f"fastest is {ladder.names[j]} at {model.latency(1, res):.3g} s",
        )
    n = best_n
    b = -(-g // n)  # balance the batches: same instance count, smaller batch, lower latency
    res = ladder.resources[best_rung]
    needed = model.resource_for(b, budget_s)
    return ScaleDecision(
        g,
        b,
        n,
        ladder.names[best_rung],
        res,
        needed if needed is not None else res,
        model.latency(b, res),
        best_cost,
        True,
        f"{n} x {ladder.names[best_rung]} at batch {b}: cheapest way to serve {g} within {budget_s:.3g} s",
    )
