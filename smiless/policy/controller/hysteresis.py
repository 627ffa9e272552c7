"""What an instance on another config, or with a smaller batch, is still worth to a plan:
the hysteresis that keeps a forecast that moves from making the controller thrash."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smiless.policy.controller.context import InstanceView
from smiless.policy.costmodel import Candidate
from smiless.policy.search import FunctionPlan, Plan
from smiless.policy.workflow import timing

CONFIG_PRICE_HYSTERESIS = 2.0
"""A ready instance on another config is replaced only when the planned config is cheaper
than 1 / this of its price (or slower than needed)."""


@dataclass(frozen=True, slots=True)
class ConfigTable:
    """Per config, what the plan's candidates for one function say about an instance on it."""

    price: dict[str, float]
    """Price per second of one instance (a candidate's group price over its instance count
    is the unit price of its instance config); absent when no candidate runs on it."""
    latency: dict[str, list[tuple[int, float]]]
    """(batch, stage latency) of the candidates whose instances run on it, by batch: an
    instance that serves B at once takes the latency of a batch of B, not of one."""
    init: dict[str, float]
    """Its planned init (μ + kσ) there: what a restart costs."""

    def latency_of(self, config: str, batch: int) -> float | None:
        """The stage latency of an instance on `config` serving `batch` at once: that of the
        smallest planned batch >= `batch` there (an upper estimate); None when none is."""
        for b, lat in self.latency.get(config, ()):
            if b >= batch:
                return lat
        return None


_TABLES: dict[int, tuple[tuple[Candidate, ...], ConfigTable]] = {}
"""Tables by the identity of the candidates tuple they come from (kept alive beside them,
so an id is never reused while cached): plans moved in time share their candidates."""


def config_table(plan: Plan, f: str) -> ConfigTable:
    cands = plan.candidates.get(f, ())
    hit = _TABLES.get(id(cands))
    if hit is not None and hit[0] is cands:
        return hit[1]
    price: dict[str, float] = {}
    by_batch: dict[str, dict[int, float]] = {}
    init: dict[str, float] = {}
    for c in cands:
        if c.instances > 0:
            price.setdefault(c.instance_config, c.price_per_second / c.instances)
        # on its instance config, the candidate's batch takes its latency; on its config, its
        # latency is at least one request's there (the least over a config is exactly that)
        for cfg, b in ((c.instance_config, max(1, c.batch)), (c.config, 1)):
            seen = by_batch.setdefault(cfg, {})
            seen[b] = min(c.latency_s, seen.get(b, c.latency_s))
        init[c.config] = c.init_s
    latency = {cfg: sorted(rows.items()) for cfg, rows in by_batch.items()}
    table = ConfigTable(price, latency, init)
    if len(_TABLES) >= 4096:
        _TABLES.clear()
    _TABLES[id(cands)] = (cands, table)
    return table


def slots(inst: InstanceView, planned_config: str, batch: int, previous: FunctionPlan | None = None) -> int:
    """Its capacity in batch slots: an unknown batch (still starting) is the plan's on its
    config, the previous plan's on that one's (an in-flight start), 1 on another."""
    b = inst.batch
    if b is None:
        if inst.config == planned_config:
            return batch
        if previous is not None and inst.config == previous.instance_config:
            return previous.batch if previous.batch > 1 else 1
        return 1
    return b if b > 1 else 1


def kept_instances(
    plan: Plan, fp: FunctionPlan, others: Sequence[InstanceView], kept_latency: dict[str, float]
) -> list[InstanceView]:
    """The instances of `others` (not on the planned config) that may serve as planned ones:
    their price per request served at once is within `CONFIG_PRICE_HYSTERESIS` of the planned
    shape's, and the DAG still meets the plan's latency target (the SLA less the planner's
    headroom) with `fp`'s stage at their latency serving their batch, given the other
    functions' kept instances (`kept_latency`, updated)."""
    table = config_table(plan, fp.function)
    want = table.price.get(fp.instance_config)
    if want is None or not plan.feasible:
        return []
    slot_price = want / max(1, fp.batch)
    ok: dict[tuple[str, int], bool] = {}
    keep: list[InstanceView] = []
    f = fp.function
    expected = max(1, plan.forecast.count)
    for inst in others:
        # what it serves at once under the plan's forecast: its capacity (unknown: the plan's
        # batch, which the gateway then sends it), at most the count
        cap = inst.batch if inst.batch is not None else fp.batch
        load = min(max(1, cap), expected)
        lat = table.latency_of(inst.config, load)
        price = inst.price_per_s if inst.price_per_s is not None else table.price.get(inst.config)
        if lat is None or price is None:
            continue
        if price / max(1, inst.batch or 1) > CONFIG_PRICE_HYSTERESIS * slot_price:
            continue
        fine = ok.get((inst.config, load))
        if fine is None:
            if lat <= kept_latency[f] + 1e-9:
                fine = True
            else:
                trial = {**kept_latency, f: lat}
                fine = timing(plan.dag, trial).latency_s <= plan.latency_target_s + 1e-9
                if fine:
                    kept_latency[f] = lat
            ok[(inst.config, load)] = fine
        if fine:
            keep.append(inst)
    return keep


def second_round(
    plan: Plan,
    fp: FunctionPlan,
    live: Sequence[InstanceView],
    previous: FunctionPlan | None,
    have: int,
    shortfall: int,
    kept_latency: dict[str, float],
) -> bool:
    """Whether the planned instances there (`live`, `have` slots in all) can serve
    `shortfall` more requests in a second round with the DAG still inside the plan's latency
    target; if so, `kept_latency` takes that stage latency. Instances keep the batch they
    were started with, so a batch that grew by a request would otherwise start a whole one."""
    if not live or not plan.feasible or shortfall > have:
        return False
    table = config_table(plan, fp.function)
    largest = max(slots(i, fp.instance_config, fp.batch, previous) for i in live)
    first = table.latency_of(fp.instance_config, largest)
    second = table.latency_of(fp.instance_config, -(-shortfall // len(live)))
    if first is None or second is None:
        return False
    f = fp.function
    trial = {**kept_latency, f: max(kept_latency[f], first + second)}
    if timing(plan.dag, trial).latency_s > plan.latency_target_s + 1e-9:
        return False
    kept_latency[f] = trial[f]
    return True
