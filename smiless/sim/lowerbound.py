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
  config cannot meet the SLA. Let p = min price, s = min s_c and I = min I_c over A_f, and the
  slack σ_f = sla - up(f) - down(f) - s (a service may start up to σ_f after its earliest time).

Derivation, for one function f. Let τ_i be the time the service of request i at f starts, on
an instance of an allowed config. Then τ_i ∈ [a_i + up, a_i + up + σ_f]; since these windows
are shifts of one interval, the k-th smallest τ lies in the k-th request's window, so take the
τ sorted with the arrivals: consecutive starts are d_i = τ_{i+1} - τ_i >= max(0, Δa_i - σ_f)
apart. Charge, at p per second, only moments when an allowed instance is certainly alive:
(1) each service interval [τ_i, τ_i + s]; (2) in each gap between a service's end and the
next service's start, the instance that serves next: it is alive from its start command,
which is at least I before it serves, so it is alive in that gap for at least
min(gap, I); (3) the first server's init, I, before τ_1 (with a warm-up, when instances may
start before the cost window opens at 0, only its part inside the window: the server is
alive from its start command, at least I before τ_1 >= a_1 >= 0, so for at least min(I, a_1)
of [0, τ_1]). These charged intervals are disjoint in time, so the cost is at least p x
their total length, p · (I + s + Σ_i h(d_i)) with
h(d) = min(d, s) + min(max(0, d - s), I) = min(d, K), K = s + I.

h is concave with h(0) = 0, hence subadditive: for any chain of requests i_1 < i_2 < ... the
consecutive gaps between two chain members add up to their distance, so Σ_i h(d_i) >=
Σ_k h(τ_{i_{k+1}} - τ_{i_k}) >= Σ_k h(max(0, a_{i_{k+1}} - a_{i_k} - σ_f)) (windows, h
non-decreasing). The bound takes the best chain (a dynamic programme over the arrivals):

    cost_f >= p · ( I + s + max over chains Σ_k min(max(0, a_{i_{k+1}} - a_{i_k} - σ_f), K) ).

(Adjacent requests alone give Σ_i h(max(0, Δa_i - σ_f)), which is ~0 when arrivals come more
often than σ_f; a chain that skips requests keeps their spread.) The app's bound is the sum
over its functions (instances serve one function). Every
term is charged inside the cost window [0, last arrival + sla]. It is a relaxation in every
direction: batching is free, several instances at once are charged as one, an init is as
short as the model allows, the price is the cheapest that could meet the SLA, and each
function is placed independently of the others.

**The work term.** The chain term charges one instance at a time, so it misses the work of
requests that come together or more often than an instance can serve them. A second bound
on the same cost_f counts that work. The inference model is linear in the batch,
T_c(B) = T_c(1) + (B - 1)·w_c with w_c = T_c(2) - T_c(1) >= 0, and a batch takes at least φ
times it. Let m = min over A_f of price_c · φ · w_c (the least a request can add to a batch's
cost), and n the number of requests counted. An instance serves one batch at a time and its
init comes before its first batch, so its cost is at least price_c x (its init + the
durations of its batches); a batch of B requests on c costs at least
price_c · φ · T_c(B) >= B·m (and at least p·s); at least one instance is started (p·I).
Summing over instances and batches (a request that meets the SLA is served at f in a batch
on an allowed config, so the batches hold all n of them):

    cost_f >= p · I + max(n · m, p · s).

Both terms bound the same cost_f, so the bound per function is the larger of the two.

A function with no allowed config (the SLA is out of reach) contributes 0: no request can
meet the SLA there, so the requests the bound counts are none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from smiless.catalogue import HardwareConfig
from smiless.sim.model import Noise, SimApp, profile_on


def function_bounds(
    app: SimApp, catalogue: Mapping[str, HardwareConfig], noise: Noise
) -> dict[str, tuple[float, float, float, float, float] | None]:
    """Per function: (price per second p, service floor s, init floor I, slack σ, the least
    cost m a request adds to a batch), or None when no config can meet the SLA (see the
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
    out: dict[str, tuple[float, float, float, float, float] | None] = {}
    eps = 1e-9
    for f in dag.functions:
        room = app.sla_s - up[f] - down[f]
        allowed = [r for r in per[f] if r[1] <= room + eps]
        if not allowed:
            out[f] = None
            continue
        p = min(r[0] for r in allowed)
        s = min(r[1] for r in allowed)
        init = min(r[2] for r in allowed)
        m = min(r[3] for r in allowed)
        out[f] = (p, s, init, max(0.0, room - s), m)
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
    the window, min(I, first arrival); every other term is unchanged."""
    every = sorted(arrivals)
    if not every:
        return 0.0
    n = len(every)
    times = sorted(set(every))  # requests arriving together are one point of a chain
    total = 0.0
    for bound in function_bounds(app, catalogue, noise).values():
        if bound is None:
            continue
        p, s, init, slack, m = bound
        cap = s + init
        first = init if warmup_s <= 0.0 else min(init, max(0.0, every[0]))
        chain = p * (s + first + best_chain(times, slack, cap))
        work = p * first + max(n * m, p * s)
        total += max(chain, work)
    return total


def best_chain(times: list[float], slack: float, cap: float) -> float:
    """max over chains of sorted `times` of Σ min(max(0, gap - slack), cap), in O(n·w) with w
    the arrivals within `slack + cap` of one another: links longer than that pay `cap`
    whatever they are, so only the best chain value before them matters (a prefix maximum)."""
    n = len(times)
    best = [0.0] * n
    prefix = [0.0] * n
    lo = 0  # times[:lo] are at least slack + cap before times[j]: their links pay cap
    for j in range(n):
        t = times[j]
        while lo < j and times[lo] <= t - slack - cap:
            lo += 1
        b = prefix[lo - 1] + cap if lo > 0 else 0.0
        i = lo
        while i < j and times[i] < t - slack:
            v = best[i] + (t - times[i] - slack)
            if v > b:
                b = v
            i += 1
        best[j] = b
        prefix[j] = b if j == 0 or b > prefix[j - 1] else prefix[j - 1]
    return prefix[-1]
