"""`lower-bound`: a clairvoyant relaxation that no policy can beat within the simulator's model.

Setting. Requests of an app arrive at known times a_1 <= ... <= a_n (clairvoyance: the bound
knows the whole future). Each request must pass every function of the DAG; a request *meets*
the SLA when its last stage finishes within `sla` of its arrival. Cost is Σ over instances of
lifetime x price (smiless.accounting). The bound holds for every run, for the requests that
met the SLA in that run (`lower_bound(..., arrivals=met_arrivals)`); for a run with no
violation that is every request.

Floors of the model (`Noise`): an init on config c takes at least I_c = Σ_phases max(0, μ - 3σ)
(μ exactly without init noise); a batch of any size on c takes at least
s_c = φ · T_c(1, r_c), φ = the smallest inference noise factor; `cs_extra` and queueing only
add. Per function f:

- up(f): longest path from the request's arrival to f's inputs with every upstream stage at
  its fastest floor over all configs; down(f): the same from f's end to the last leaf. A
  request that meets the SLA is served at f inside W = [a + up(f), a + sla - down(f)].
- Allowed configs A_f = {c : up(f) + s_c + down(f) <= sla}: a request served at f on any other
  config cannot meet the SLA. The slack σ_f = sla - up(f) - down(f) - min_c s_c (a service may
  start up to σ_f after its earliest time). p_c is c's price per second.

Derivation, for one function f. Let τ_i be the time the service of request i at f starts, on
an instance of an allowed config. Then τ_i ∈ [a_i + up, a_i + up + σ_f]; since these windows
are shifts of one interval, the k-th smallest τ lies in the k-th request's window, so take the
τ sorted with the arrivals: for i < j, τ_j - τ_i >= max(0, a_j - a_i - σ_f).

Take any chain of requests i_1 < i_2 < ... and, for each link, the interval [τ_{i_k},
τ_{i_{k+1}}) of length d. Charge, at their instances' prices, only moments inside it when an
instance is certainly alive: the server of i_k serves from τ_{i_k} for at least s_c, and the
server of i_{k+1} is alive from its start command, at least I_{c'} before it serves (an
instance inits before its first service, and stays alive from start to stop). If one instance
serves both, it is alive the whole link: at least p_c·min(d, s_c + I_c). If two serve them, both
are charged: p_c·min(d, s_c) + p_{c'}·min(d, I_{c'}). Neither config is known, so the link costs
at least

    L(d) = min( min_c p_c·min(d, s_c + I_c),  min_c p_c·min(d, s_c) + min_c p_c·min(d, I_c) )

(minimising each term on its own only lowers it). The links' intervals are disjoint in time,
and so are the first server's init before τ_1 (at least min_c p_c·I_c; with a warm-up, when
instances may start before the cost window opens at 0, only its part inside the window:
min_c p_c·min(I_c, a_1)) and the last service after τ_n (at least min_c p_c·s_c). L is
non-decreasing in d and τ-links are at least their arrival distance less σ_f long, so the bound
takes the best chain (a dynamic programme over the arrivals):

    cost_f >= min_c p_c·I_c + min_c p_c·s_c + max over chains Σ_k L(max(0, a_{i_{k+1}} - a_{i_k} - σ_f)).

(Adjacent requests alone give ~0 when arrivals come more often than σ_f; a chain that skips
requests keeps their spread.) The app's bound is the sum over its functions (instances serve
one function). Every term is charged inside the cost window [0, last arrival + sla]. It is a
relaxation in every direction: batching is free, several instances at once are charged as
one, an init is as short as the model allows, each link may pick its own configs, and each
function is placed independently of the others (its slack as if every other stage were at
its fastest).

**The work term.** The chain term charges one instance at a time, so it misses the work of
requests that come together or more often than an instance can serve them. A second bound
on the same cost_f counts that work. The inference model is linear in the batch,
T_c(B) = T_c(1) + (B - 1)·w_c with w_c = T_c(2) - T_c(1) >= 0, and a batch takes at least φ
times it. Let m = min over A_f of p_c · φ · w_c (the least a request adds to a batch's
cost), and n the number of requests counted. An instance serves one batch at a time and its
init comes before its first batch, so its cost is at least p_c x (its init + the
durations of its batches); a batch of B requests on c costs at least
p_c · φ · T_c(B) >= B·m (and at least p_c·s_c); at least one instance is started. Summing
over instances and batches (a request that meets the SLA is served at f in a batch on an
allowed config, so the batches hold all n of them):

    cost_f >= min_c p_c·I_c + max(n · m, min_c p_c·s_c).

Both terms bound the same cost_f, so the bound per function is the larger of the two.

A function with no allowed config (the SLA is out of reach) contributes 0: no request can
meet the SLA there, so the requests the bound counts are none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from smiless.catalogue import HardwareConfig
from smiless.sim.model import Noise, SimApp, profile_on


def _lower_envelope(pairs: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The (price, length) pairs whose p·min(d, length) is the least for some d: a pair is
    dropped when another is no dearer per second and no dearer in all (p'·K' <= p·K)."""
    kept: list[tuple[float, float]] = []
    for p, k in sorted(pairs, key=lambda r: (r[0], -r[1])):
        if all(p * k < q * j for q, j in kept):
            kept.append((p, k))
    return tuple(kept)


def _least(pairs: tuple[tuple[float, float], ...], d: float) -> float:
    return min(p * (d if d < k else k) for p, k in pairs)


@dataclass(frozen=True, slots=True)
class FunctionBound:
    """What the bound knows of one function (see the module docstring): the slack σ, and per
    allowed config c its price p_c, service floor s_c and init floor I_c, kept as the lower
    envelopes the bound takes its minima over; m, the least a request adds to a batch."""

    slack: float
    whole: tuple[tuple[float, float], ...]
    """(p_c, s_c + I_c): one instance serves both ends of a link."""
    serve: tuple[tuple[float, float], ...]
    """(p_c, s_c)"""
    start: tuple[tuple[float, float], ...]
    """(p_c, I_c)"""
    m: float

    @classmethod
    def of(cls, slack: float, rows: Iterable[tuple[float, float, float]], m: float) -> FunctionBound:
        """From (p_c, s_c, I_c) per allowed config."""
        rows = list(rows)
        return cls(
            slack,
            _lower_envelope((p, s + i) for p, s, i in rows),
            _lower_envelope((p, s) for p, s, _ in rows),
            _lower_envelope((p, i) for p, _, i in rows),
            m,
        )

    def link(self, d: float) -> float:
        """The least alive-cost inside a link d long: L(d) of the module docstring."""
        if d <= 0.0:
            return 0.0
        return min(_least(self.whole, d), _least(self.serve, d) + _least(self.start, d))

    @property
    def reach(self) -> float:
        """L(d) is constant for d at least this long."""
        return max(k for _, k in (*self.whole, *self.serve, *self.start))

    def first(self, before: float = float("inf")) -> float:
        """The first server's init, of which at most `before` falls inside the window."""
        return _least(self.start, before)

    @property
    def last(self) -> float:
        """The last service: min p_c·s_c."""
        return _least(self.serve, float("inf"))


def function_bounds(
    app: SimApp, catalogue: Mapping[str, HardwareConfig], noise: Noise
) -> dict[str, FunctionBound | None]:
    """Per function its `FunctionBound`, or None when no config can meet the SLA (see the
    module docstring)."""
    dag = app.dag
    fastest: dict[str, float] = {}
    per: dict[str, list[tuple[float, float, float, float]]] = {}
    phi = noise.inference_floor
    for f in dag.functions:
        rows: list[tuple[float, float, float, float]] = []
        for cfg in catalogue.values():
            prof = profile_on(app, f, cfg)
            if prof is None:
                continue
            one = prof.inference.latency(1, cfg.resource)
            extra = max(0.0, prof.inference.latency(2, cfg.resource) - one)
            price = cfg.price_per_second
            rows.append((price, phi * one, noise.init_floor(prof.init), price * phi * extra))
        if not rows:
            raise ValueError(f"{f}: no profile for any config of the catalogue")
        per[f] = rows
        fastest[f] = min(r[1] for r in rows)
    up: dict[str, float] = {}
    for f in dag.functions:
        up[f] = max((up[p] + fastest[p] for p in dag.parents[f]), default=0.0)
    down: dict[str, float] = {}
    for f in reversed(dag.functions):
        down[f] = max((fastest[c] + down[c] for c in dag.children[f]), default=0.0)
    out: dict[str, FunctionBound | None] = {}
    eps = 1e-9
    for f in dag.functions:
        room = app.sla_s - up[f] - down[f]
        allowed = [r for r in per[f] if r[1] <= room + eps]
        if not allowed:
            out[f] = None
            continue
        slack = max(0.0, room - min(r[1] for r in allowed))
        out[f] = FunctionBound.of(slack, (r[:3] for r in allowed), min(r[3] for r in allowed))
    return out


def lower_bound(
    app: SimApp,
    arrivals: Iterable[float],
    catalogue: Mapping[str, HardwareConfig],
    noise: Noise,
    *,
    warmup_s: float = 0.0,
) -> float:
    """The cost no policy can go below while the requests arriving at `arrivals` meet the SLA
    (derivation in the module docstring): per function, the larger of the chain and the work
    term. `warmup_s` > 0 (the policy could start instances before the cost window, see
    `simulate`): the first server's init is charged only for the part that must fall inside
    the window, min(I_c, first arrival); every other term is unchanged."""
    every = sorted(arrivals)
    if not every:
        return 0.0
    n = len(every)
    times = sorted(set(every))  # requests arriving together are one point of a chain
    total = 0.0
    for bound in function_bounds(app, catalogue, noise).values():
        if bound is None:
            continue
        first = bound.first() if warmup_s <= 0.0 else bound.first(max(0.0, every[0]))
        chain = first + bound.last + best_chain(times, bound.slack, bound.link, bound.reach)
        work = first + max(n * bound.m, bound.last)
        total += max(chain, work)
    return total


def best_chain(times: list[float], slack: float, link: Callable[[float], float], reach: float) -> float:
    """max over chains of sorted `times` of Σ link(max(0, gap - slack)), for a non-decreasing
    `link` that is constant from `reach` on, in O(n·w) with w the arrivals within
    `slack + reach` of one another: longer links all pay link(reach), so only the best chain
    value before them matters (a prefix maximum)."""
    n = len(times)
    full = link(reach)
    best = [0.0] * n
    prefix = [0.0] * n
    lo = 0  # times[:lo] are at least slack + reach before times[j]: their links pay `full`
    for j in range(n):
        t = times[j]
        while lo < j and times[lo] <= t - slack - reach:
            lo += 1
        b = prefix[lo - 1] + full if lo > 0 else 0.0
        i = lo
        while i < j and times[i] < t - slack:
            v = best[i] + link(t - times[i] - slack)
            if v > b:
                b = v
            i += 1
        best[j] = b
        prefix[j] = b if j == 0 or b > prefix[j - 1] else prefix[j - 1]
    return prefix[-1]
