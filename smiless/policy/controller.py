"""The controller's timing: which instances to start and stop now, given a plan.

Pure: the optimizer service calls `decide` on every tick with the instances it sees (their
usage read from the workers), the simulator calls it at every event; both then carry out the
same decisions. Nothing here sleeps, reads a clock or talks to a backend.

Per function the plan gives a *warm window*, the span in which `instances` instances of
`instance_config` should be up:

- **stop after serving** (case 1, and scaled groups pre-warmed per arrival): from
  `prewarm_at_s` (the next predicted arrival + the stage's ready offset - init at μ + kσ) to
  the moment the predicted inputs should have been served plus a grace of
  max(`miss_grace_s`, init), or until the predictor's idle-time tail (`forecast.keep_alive_s`,
  the P99 of the time to the next arrival) has passed, if that is later. The grace bounds
  what a prediction that came too early costs; it is at least the instance's init because
  stopping sooner is a loss whenever the arrival is merely late (the predictors err early by
  design): a restart pays the init again, and the late arrival a cold start (the ski-rental
  break-even again). Within the tail a late arrival still finds its instance (stopping first
  left the 2 s amber-alert SLA 3 % of violations, all cold starts after such stops, for 2 %
  less cost).
  An instance that has served and gone idle is stopped ("served"): the next arrival gets a
  fresh, pre-warmed one, and the window counts as used (no restart before the next plan).
  It stops at once, unless the arrival's burst may still be coming (`forecast.burst_s` after
  it: the predictor counts one slot's requests as one arrival) and fewer than the predicted
  `count` have arrived in it (`arrived`; when unknown, the function's instances have served
  fewer than `count`); then at the burst's end. Counting this burst's arrivals, not what the
  instances served before it, matters when requests are spread over the slot: the instance
  that served a burst's first request was stopped at once for the count its earlier bursts
  made up, and the rest of the burst met a cold start (amber-alert, Poisson spread).
- **kept alive** (case 2, and scaled groups kept warm): from now (the plan was made after an
  arrival) until the predicted arrival has been served, then for `keep_alive_s` more: an
  instance idle for longer than `keep_alive_s` once the window has closed is stopped
  ("keep-alive expired").

With no arrival history (`active=False`) nothing is pre-warmed: only arrivals start instances
(the optimizer's `EnsureInstance`), and they are stopped by the same rules. Busy instances are
never stopped.

**Requests in flight** (`inflight`: per function, invocations that have arrived but that it
has not served yet, queued there or still upstream). A plan made at an arrival times the
*next* arrival; the requests of the arrival that triggered it may not have reached a
downstream stage yet. While a function has requests in flight, none of its idle instances
is stopped after serving or for want of an arrival ("served" waits until none is left in
flight), a scale-down leaves at least their count in slots (where a start for them would
come too late, the instances there are what they get: stopping one made the gateway start
another on demand, voice-assistant 6 s 4 % dearer), and from `plan.now + ready
offset - init` (when the plan made at their arrival would have started them) it is scaled
out to `⌈in flight / batch⌉` instances, less what the instances on other configs still
there can take at once (a request already on its way is served by any of them; the plan's
config is for the arrivals to come), but only where such a start is ready before the
requests get there or nothing is live: a start that would be late helps less than the
instances already there, which serve the rest in their next round. Such a start takes the
shape (config and batch) of the plan made before their arrival (`previous`), which sized
them, not that of the plan made at it, which times the next arrival: a downstream stage's
pre-warm for an arrival is often due after it, when that plan has just been replaced
(voice-assistant at 6 s: 9 % less cost).

**Hysteresis**, so that a forecast that moves does not make the controller thrash:

- *Config change*: an instance on another config than the plan's still counts towards the
  planned instances when it is at least as fast as the planned config for that function and
  its price is less than `CONFIG_PRICE_HYSTERESIS` x the planned one's (the new config is
  not materially cheaper); only the others are surplus: they serve until enough planned
  ones are ready to take the window's count and the requests in flight, then are stopped
  when idle ("config changed").
- *Batch shortfall*: instances keep the batch they were started with (their capacity per
  round). When the planned instances there hold fewer slots than the plan wants at once,
  the shortfall waits for a second round instead of a new instance, if it fits in one round
  of theirs and the DAG still meets the plan's latency target with the stage taking a round
  at their largest batch plus one at the shortfall's share (`_second_round`). A count
  forecast that moves between 13 and 14 would otherwise start a GPU instance for object
  detection in most of amber-alert's 10 s cycles (standard matrix: amber-alert 12-16 %
  cheaper at 4-6 s; voice-assistant 6 s 4 % dearer, where an under-forecast burst then
  meets small-batch instances and the gateway starts one on demand).
- *Scale down*: an idle instance beyond the planned count is stopped only once it has been
  idle for max(`keep_alive_s`, its own config's init) ("scale down"). Idling longer than a re-init costs
  more than starting again when the load comes back; stopping sooner pays the init again
  (and a cold start) whenever the count goes back up: the ski-rental break-even.
  Instances stopped after serving are not held. A ready instance is never the surplus while
  the count is made up by one still starting: stopping it leaves requests to wait out that
  init (Poisson-spread amber-alert at 2 s: 17.6 % -> 11.7 % violations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from smiless.policy.costmodel import Candidate
from smiless.policy.search import FunctionPlan, Plan
from smiless.policy.workflow import timing

DEFAULT_MISS_GRACE_S = 2.0
"""How long a pre-warmed instance waits past its predicted arrival before it is stopped."""

CONFIG_PRICE_HYSTERESIS = 2.0
"""A ready instance on another config is replaced only when the planned config is cheaper
than 1 / this of its price (or slower than needed); see the module docstring."""


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


@dataclass(frozen=True, slots=True)
class WarmWindow:
    start: float
    end: float
    count: int


def warm_window(plan: Plan, fp: FunctionPlan, *, active: bool, miss_grace_s: float) -> WarmWindow:
    """When, and how many, instances of `fp` the plan wants up (see the module docstring)."""
    return WarmWindow(*_window(plan, fp, active, miss_grace_s))


def _window(plan: Plan, fp: FunctionPlan, active: bool, miss_grace_s: float) -> tuple[float, float, int]:
    """`warm_window` as a plain tuple: `decide` needs one per function at every simulator
    event."""
    it = plan.forecast.it_s
    if not active or not math.isfinite(it):
        return math.inf, -math.inf, 0
    served_by = plan.now + it + fp.ready_offset_s + fp.latency_s
    if fp.stop_after_serving:
        start = fp.prewarm_at_s if fp.prewarm_at_s is not None else served_by - fp.exec_s
        grace = max(miss_grace_s, fp.init_s, plan.forecast.keep_alive_s - it)  # see the module docstring
        return start, served_by + grace, fp.instances
    return -math.inf, served_by + fp.keep_alive_s, fp.instances


@dataclass(frozen=True, slots=True)
class _ConfigTable:
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


_TABLES: dict[int, tuple[tuple[Candidate, ...], _ConfigTable]] = {}
"""Tables by the identity of the candidates tuple they come from (kept alive beside them,
so an id is never reused while cached): plans moved in time share their candidates."""


def _config_table(plan: Plan, f: str) -> _ConfigTable:
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
    table = _ConfigTable(price, latency, init)
    if len(_TABLES) >= 4096:
        _TABLES.clear()
    _TABLES[id(cands)] = (cands, table)
    return table


def _kept(
    plan: Plan, fp: FunctionPlan, others: Sequence[InstanceView], kept_latency: dict[str, float]
) -> list[InstanceView]:
    """The instances of `others` (not on the planned config) that may serve as planned ones:
    their price per request served at once is within `CONFIG_PRICE_HYSTERESIS` of the planned
    shape's, and the DAG still meets the plan's latency target (the SLA less the planner's
    headroom) with `fp`'s stage at their latency serving their batch, given the other
    functions' kept instances (`kept_latency`, updated)."""
    table = _config_table(plan, fp.function)
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


def _second_round(
    plan: Plan,
    fp: FunctionPlan,
    live: Sequence[InstanceView],
    previous: FunctionPlan | None,
    have: int,
    shortfall: int,
    kept_latency: dict[str, float],
) -> bool:
    """Whether the planned instances there (`live`, on the planned config, `have` slots in
    all) can serve `shortfall` more requests than they take at once in a second round, with
    the DAG still inside the plan's latency target: the stage then takes a round at their
    largest batch plus one at the shortfall's share. If so, `kept_latency` takes that stage
    latency.

    Why: the instances keep the batch they were started with, so a plan whose batch grew by
    a request or two (a count forecast moving between 13 and 14) would otherwise start a
    whole instance, a GPU init in amber-alert, for a request that a second round serves in
    time."""
    if not live or not plan.feasible or shortfall > have:
        return False
    table = _config_table(plan, fp.function)
    largest = max(_slots(i, fp.instance_config, fp.batch, previous) for i in live)
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


def _idle_since(inst: InstanceView) -> float:
    return inst.idle_since or 0.0


def _slots(inst: InstanceView, planned_config: str, batch: int, previous: FunctionPlan | None = None) -> int:
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


def decide(
    plan: Plan,
    now: float,
    instances: Sequence[InstanceView],
    *,
    active: bool = True,
    miss_grace_s: float = DEFAULT_MISS_GRACE_S,
    inflight: Mapping[str, int] | None = None,
    previous: Plan | None = None,
    arrived: int | None = None,
) -> Decision:
    """Starts and stops that bring `instances` (one app's live ones) in line with `plan` at
    `now`, and when to look again. `active`: the app has arrival history, so the plan's
    forecast is worth acting on before any request comes. `inflight`: per function, the
    invocations that have arrived and that it has not served yet (None: unknown, as 0).
    `previous`: the plan this one replaced at the latest arrival, which sized the requests
    in flight. `arrived`: the app's requests that have arrived since `plan.now`, the burst
    the plan was made at (None: unknown; module docstring)."""
    # Runs at every simulator event: written for speed (no per-function closures or
    # dataclasses; `x if x > 1 else 1` for max(1, x)), the rules as the module docstring says.
    starts: list[StartInstance] = []
    stops: list[StopInstance] = []
    wake = math.inf
    by_function: dict[str, list[InstanceView]] = {}
    for inst in instances:
        group = by_function.get(inst.function)
        if group is None:
            by_function[inst.function] = [inst]
        else:
            group.append(inst)
    # stage latencies with the other-config instances kept so far: the SLA check of the next
    kept_latency = {f: fp.latency_s for f, fp in plan.functions.items()}
    burst_end = plan.now + plan.forecast.burst_s
    for f, fp in plan.functions.items():
        mine = by_function.pop(f, None) or []
        pending = inflight.get(f, 0) if inflight is not None else 0
        w_start, w_end, w_count = _window(plan, fp, active, miss_grace_s)
        if not mine and pending <= 0 and w_count == 0 and w_start == math.inf:
            continue  # nothing there, nothing wanted, no window to wake for
        after = fp.stop_after_serving
        # the window of the requests in flight: open while any is left
        in_current = False
        if pending > 0:
            cur_start = plan.now + fp.ready_offset_s - fp.init_s
            in_current = cur_start <= now
            if not in_current and cur_start < wake:
                wake = cur_start
        in_window = w_start <= now <= w_end
        if now < w_start:
            if w_start < wake:
                wake = w_start
        elif now <= w_end and w_end < wake:
            wake = w_end
        batch = fp.batch if fp.batch > 1 else 1
        planned_cfg = fp.instance_config
        pfp = previous.functions.get(f) if previous is not None else None
        planned = [i for i in mine if i.config == planned_cfg]
        others = [i for i in mine if i.config != planned_cfg] if len(planned) < len(mine) else []
        if others:  # hysteresis: what of the others may stay (module docstring)
            keep = _kept(plan, fp, others, kept_latency)
            if keep:
                planned += keep
                kept_ids = {i.id for i in keep}
                others = [i for i in others if i.id not in kept_ids]
        stopped: set[str] = set()
        if not (after and burst_end > now):
            so_far = 0
        elif arrived is not None:
            so_far = arrived
        else:
            so_far = sum(i.served for i in mine)
        for inst in mine:
            if inst.idle_since is None or not inst.ready:
                continue  # serving or starting: never interrupted
            if pending > 0:
                continue  # wanted by the requests in flight, even before their window opens
            if after and inst.served > 0:
                if burst_end > now and so_far < plan.forecast.count:
                    if burst_end < wake:  # the rest of this arrival's burst may still come
                        wake = burst_end
                    continue
                stops.append(StopInstance(inst.id, f, "served"))
                stopped.add(inst.id)
            elif not in_window:
                expires = inst.idle_since + (0.0 if after else fp.keep_alive_s)
                if now >= expires:
                    stops.append(StopInstance(inst.id, f, "no arrival" if after else "keep-alive expired"))
                    stopped.add(inst.id)
                elif expires < wake:
                    wake = expires
        # An instance that served inside the window has met the arrival it was warmed for:
        # the next window comes with the plan made after that arrival.
        consumed = after and any(
            i.served > 0 and i.idle_since is not None and i.idle_since >= w_start for i in mine
        )
        planned_need = w_count * batch if in_window and not consumed else 0
        live = [i for i in planned if i.id not in stopped] if stopped else planned
        have = 0
        ready_slots = 0
        for i in live:
            n = _slots(i, planned_cfg, batch, pfp)
            have += n
            if i.ready:
                ready_slots += n
        # the others serve until ready planned ones can take what is wanted of the function
        if others and ready_slots > 0 and ready_slots >= planned_need and ready_slots >= pending:
            for inst in others:
                if inst.id not in stopped and inst.ready and inst.idle_since is not None:
                    stops.append(StopInstance(inst.id, f, "config changed"))
                    stopped.add(inst.id)
        inflight_need = 0
        if in_current:
            # scale out for them only where a start is ready before they get here, or when
            # nothing is there at all; else they queue for the instances there
            timely = now + fp.init_s <= plan.now + fp.ready_offset_s + 1e-9
            spare = sum(_slots(i, planned_cfg, batch, pfp) for i in others if i.id not in stopped)
            if timely or have + spare == 0:
                inflight_need = pending - spare
        need = planned_need if planned_need > inflight_need else inflight_need
        if need <= 0:
            continue
        if (
            have < need
            and need == planned_need
            and _second_round(plan, fp, live, pfp, have, need - have, kept_latency)
        ):
            have = need  # the shortfall waits one round on the instances there
        if have < need:
            reason = "pre-warm" if after else "keep warm"
            if need > planned_need:
                reason = "in flight"
                # in the shape planned for them (by the plan made before they came)
                if pfp is not None and pfp.instance_config != planned_cfg:
                    pb = pfp.batch if pfp.batch > 1 else 1
                    for _ in range(-(-(need - have) // pb)):
                        starts.append(StartInstance(f, pfp.instance_config, reason, pb))
                    continue
            for _ in range(-(-(need - have) // batch)):
                starts.append(StartInstance(f, planned_cfg, reason))
            continue
        idle = [i for i in live if i.ready and i.idle_since is not None]
        if not idle:
            continue
        idle.sort(key=_idle_since)
        # the requests in flight keep what they need, even where starting more for them
        # would not have been timely
        if pending > need:
            need = pending
        # a kept-alive surplus is held for a re-init's worth of idling (the instance's own
        # init, on its config); instances stopped after serving are not held
        init_of = _config_table(plan, f).init
        for inst in idle:
            n = _slots(inst, planned_cfg, batch, pfp)
            if have - n < need or ready_slots - n < need:
                continue  # (a ready instance is not given up for one still starting)
            assert inst.idle_since is not None
            hold = 0.0 if after else max(fp.keep_alive_s, init_of.get(inst.config, fp.init_s))
            expires = inst.idle_since + hold
            if now >= expires:
                stops.append(StopInstance(inst.id, f, "scale down"))
                stopped.add(inst.id)
                have -= n
                ready_slots -= n
            elif expires < wake:
                wake = expires
    for f, rest in by_function.items():  # functions the plan no longer has
        for inst in rest:
            if inst.ready and inst.idle_since is not None:
                stops.append(StopInstance(inst.id, f, "not in the plan"))
    return Decision(tuple(starts), tuple(stops), wake)
