"""`smiless bench policies`: every policy on the three reference apps at SLA 2-6 s, in the
simulator, against the clairvoyant lower bound; and the simulator's scale on synthetic apps.

The standard matrix (documented, fixed): the Azure 2019 sample's rows chosen by
`smiless.sim.workload.select_rows` (three rows: regular, typical and bursty inter-arrivals),
mapped in that order to voice-assistant, amber-alert and image-query; one trace minute = 2 s;
the first 720 minutes are history (the predictors train on them), the last 720 are simulated;
arrivals of a minute together (the reference's load generator); noise: init drawn from each
profile's normal phases, inference with a 5 % coefficient of variation; seed 0; every policy
starts `WARMUP_S` = 15 s before the first simulated slot, uncharged (the reference load
generator's warm-up sleep): without it the first arrival meets no instance whatever the
policy, which is the simulation's start, not the policy (image-query's first burst was 1.7 %
of its requests, for every policy alike).

Two row sets: "tuning", the three rows above, on which the policies were developed, and
"held-out" (`smiless.sim.workload.held_out_rows`), two more rows per app of the same kind that
no policy change was judged on. The README reports the held-out set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from smiless.accounting import Lifetime, total_cost
from smiless.catalogue import HardwareConfig, load_catalogue
from smiless.sim import (
    LOWER_BOUND,
    POLICIES,
    REFERENCE_APPS,
    Noise,
    PolicyContext,
    SimApp,
    Workload,
    load_app,
    lower_bound,
    make_policy,
    select_rows,
    simulate,
    synthetic_counts,
)
from smiless.sim.workload import DEFAULT_SLOT_S, held_out_rows, workloads_from_rows
from smiless.trace import Spread, load_trace

SLAS: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0)
HISTORY_MINUTES = 720
WARMUP_S = 15.0
MATRIX_POLICIES: tuple[str, ...] = (*POLICIES, LOWER_BOUND)
RowSet = Literal["tuning", "held-out"]
ROW_SETS: tuple[RowSet, ...] = ("tuning", "held-out")
ROWS_PER_APP: dict[str, int] = {"tuning": 1, "held-out": 2}
CURVE_SLA = 4.0
"""The SLA whose runs keep their instance lifetimes for the cost-over-time plot."""


@dataclass
class RunRow:
    app: str
    sla_s: float
    policy: str
    cost: float
    cost_vs_lower_bound: float
    violation_ratio: float
    p99_ms: float
    cold_starts: int
    invocations: int
    sim_wall_s: float
    trace_row: str
    events: int = 0
    breakdown: dict[str, object] = field(default_factory=dict)
    """Where the cost, cold starts and violations come from (`smiless.sim.Breakdown`)."""
    row_set: str = "tuning"


def standard_workloads(
    trace_path: str | Path,
    *,
    apps: Sequence[str] = REFERENCE_APPS,
    spread: Spread = "together",
    slot_s: float = DEFAULT_SLOT_S,
    history_minutes: int = HISTORY_MINUTES,
    seed: int = 0,
    row_set: RowSet = "tuning",
) -> list[tuple[str, Workload]]:
    """(app name, workload) of the documented matrix: each reference app has its own row (two
    in the held-out set), whichever of them are asked for and in whatever order."""
    unknown = [a for a in apps if a not in REFERENCE_APPS]
    if unknown:
        raise ValueError(f"apps: {', '.join(unknown)} not among the matrix's {', '.join(REFERENCE_APPS)}")
    trace = load_trace(trace_path)
    n = len(REFERENCE_APPS)
    picked = [(r,) for r in select_rows(trace, n)] if row_set == "tuning" else held_out_rows(trace, n)
    rows = dict(zip(REFERENCE_APPS, picked, strict=True))
    return [
        (name, Workload(r.counts, history_minutes, slot_s, spread, seed, r.hash_function))
        for name in apps
        for r in rows[name]
    ]


def run_one(
    app: SimApp,
    wl: Workload,
    policy: str,
    catalogue: dict[str, HardwareConfig],
    noise: Noise,
    *,
    seed: int = 0,
    shared: MutableMapping[Any, Any] | None = None,
    bound: float | None = None,
    warmup_s: float = WARMUP_S,
) -> tuple[RunRow, list[Lifetime]]:
    """One simulated run (or the bound's row) and its instances' lifetimes."""
    shared = {} if shared is None else shared
    arrivals = [t for t, _, n in wl.arrival_groups() for _ in range(n)]
    if bound is None:
        bound = lower_bound(app, arrivals, catalogue, noise, warmup_s=warmup_s)
    if policy == LOWER_BOUND:
        return (
            RunRow(app.name, app.sla_s, policy, bound, 1.0, 0.0, 0.0, 0, len(arrivals), 0.0, wl.source),
            [],
        )
    t0 = time.perf_counter()
    pol = make_policy(policy, PolicyContext(app, wl, catalogue, noise, shared))
    res = simulate([(app, wl, pol)], catalogue, noise=noise, seed=seed, warmup_s=warmup_s)
    wall = time.perf_counter() - t0
    a = res.apps[0]
    row = RunRow(
        app.name,
        app.sla_s,
        policy,
        a.cost,
        a.cost / bound if bound > 0 else math.inf,
        a.violation_ratio,
        a.latency_percentile(99) * 1000.0,
        a.cold_starts,
        a.invocations,
        wall,
        wl.source,
        res.events,
        a.breakdown.as_dict(),
    )
    return row, a.lifetimes


@dataclass
class Matrix:
    rows: list[RunRow]
    curves: dict[tuple[str, str], list[Lifetime]]
    """(app, policy) -> lifetimes of the run at `CURVE_SLA`."""
    end_s: dict[str, float]


def run_matrix(
    trace_path: str | Path,
    *,
    apps: Sequence[str] = REFERENCE_APPS,
    slas: Sequence[float] = SLAS,
    policies: Sequence[str] = MATRIX_POLICIES,
    spread: Spread = "together",
    noise: Noise | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    warmup_s: float = WARMUP_S,
    row_sets: Sequence[RowSet] = ROW_SETS,
) -> Matrix:
    """Every (row set, app row, SLA, policy); predictors are fitted once per trace row and
    shared."""
    noise = noise or Noise()
    catalogue = load_catalogue()
    shared: dict[Any, Any] = {}
    rows: list[RunRow] = []
    curves: dict[tuple[str, str], list[Lifetime]] = {}
    end_s: dict[str, float] = {}
    workloads = [
        (row_set, name, wl)
        for row_set in row_sets
        for name, wl in standard_workloads(trace_path, apps=apps, spread=spread, seed=seed, row_set=row_set)
    ]
    for row_set, name, wl in workloads:
        base = load_app(name)
        for sla in slas:
            app = base.with_sla(sla)
            arrivals = [t for t, _, n in wl.arrival_groups() for _ in range(n)]
            bound = lower_bound(app, arrivals, catalogue, noise, warmup_s=warmup_s)
            for p in policies:
                if progress is not None:
                    progress(f"{row_set} {name} sla={sla:g} {p}")
                row, lives = run_one(
                    app, wl, p, catalogue, noise, seed=seed, shared=shared, bound=bound, warmup_s=warmup_s
                )
                row.row_set = row_set
                rows.append(row)
                if row_set == "tuning" and sla == CURVE_SLA and p != LOWER_BOUND:
                    curves[(name, p)] = lives
                    end_s[name] = wl.duration_s + 4.0 * sla
    return Matrix(rows, curves, end_s)


def summarize(rows: Iterable[RunRow]) -> list[dict[str, object]]:
    """Per (row set, app row, SLA): smiless's cost and violations against IceBreaker, the bound,
    and whether smiless is the cheapest among the policies whose violation ratio is within 1
    point of it."""
    by: dict[tuple[str, str, str, float], dict[str, RunRow]] = {}
    for r in rows:
        by.setdefault((r.row_set, r.app, r.trace_row, r.sla_s), {})[r.policy] = r
    out: list[dict[str, object]] = []
    for (row_set, app, trace_row, sla), runs in by.items():
        s = runs.get("smiless")
        ice = runs.get("icebreaker")
        if s is None:
            continue
        rivals = [
            r
            for p, r in runs.items()
            if p not in ("smiless", LOWER_BOUND, "oracle") and r.violation_ratio <= s.violation_ratio + 0.01
        ]
        cheaper = sorted(r.policy for r in rivals if r.cost < s.cost)
        out.append(
            {
                "row_set": row_set,
                "app": app,
                "trace_row": trace_row,
                "sla_s": sla,
                "smiless_cost": s.cost,
                "smiless_violation_ratio": s.violation_ratio,
                "smiless_vs_icebreaker_cost": s.cost / ice.cost
                if ice is not None and ice.cost > 0
                else math.nan,
                "icebreaker_violation_ratio": ice.violation_ratio if ice is not None else math.nan,
                "cost_vs_lower_bound": s.cost_vs_lower_bound,
                "cheaper_within_1pt": ",".join(cheaper) or "-",
            }
        )
    return out


def cost_curve(lives: Sequence[Lifetime], end_s: float, points: int = 60) -> list[tuple[float, float]]:
    """Cumulative cost at `points` instants over [0, end] (smiless.accounting's cost)."""
    out = []
    for k in range(1, points + 1):
        t = end_s * k / points
        out.append((t, total_cost(lives, 0.0, t, t)))
    return out


def plot(matrix: Matrix, out_dir: str | Path) -> list[Path]:
    """Three PNGs: cost normalised to the lower bound, violation ratio, cost over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = matrix.rows
    apps = list(dict.fromkeys(r.app for r in rows))
    slas = sorted({r.sla_s for r in rows})
    policies = [p for p in dict.fromkeys(r.policy for r in rows) if p != LOWER_BOUND]
    index = {(r.app, r.trace_row, r.sla_s, r.policy): r for r in rows}
    paths: list[Path] = []
    for row_set in dict.fromkeys(r.row_set for r in rows):
        groups = list(dict.fromkeys((r.app, r.trace_row) for r in rows if r.row_set == row_set))
        labels = [a if row_set == "tuning" else f"{a} {t[:6]}" for a, t in groups]
        prefix = "" if row_set == "tuning" else f"{row_set}_"
        for metric, fname, ylabel, log in (
            ("cost_vs_lower_bound", "cost_normalised.png", "cost / lower bound", True),
            ("violation_ratio", "violation_ratio.png", "SLA violation ratio", False),
        ):
            fig, axes = plt.subplots(1, len(slas), figsize=(4.2 * len(slas), 4.2), sharey=True, squeeze=False)
            width = 0.8 / max(1, len(policies))
            for ax, sla in zip(axes[0], slas, strict=True):
                for j, p in enumerate(policies):
                    ys = [
                        getattr(index[(a, t, sla, p)], metric) if (a, t, sla, p) in index else 0.0
                        for a, t in groups
                    ]
                    ax.bar([i + j * width for i in range(len(groups))], ys, width, label=p)
                ticks = [i + 0.4 - width / 2 for i in range(len(groups))]
                ax.set_xticks(ticks, labels, rotation=20, fontsize=8)
                ax.set_title(f"{row_set}: SLA {sla:g} s")
                if log:
                    ax.set_yscale("log")
            axes[0][0].set_ylabel(ylabel)
            axes[0][-1].legend(fontsize=7, loc="upper right")
            fig.tight_layout()
            path = out / f"{prefix}{fname}"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    apps = list(dict.fromkeys(a for a, _ in matrix.curves))
    if not apps:  # the curves are the tuning set's: none when only the held-out set ran
        return paths
    fig, axes = plt.subplots(1, len(apps), figsize=(5 * len(apps), 4), squeeze=False)
    for ax, a in zip(axes[0], apps, strict=True):
        for p in policies:
            lives = matrix.curves.get((a, p))
            if lives is None:
                continue
            pts = cost_curve(lives, matrix.end_s[a])
            ax.plot([t for t, _ in pts], [c for _, c in pts], label=p)
        ax.set_title(f"{a}, SLA {CURVE_SLA:g} s")
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("cumulative cost")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "cost_over_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


# --- scale -----------------------------------------------------------------------------------------


def run_scale(
    app_counts: Sequence[int],
    *,
    policy: str = "smiless",
    predictor: str = "moving-average",
    sla_s: float = 4.0,
    minutes: int = 1440,
    history_minutes: int = 120,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, object]]:
    """The simulator on n synthetic apps (the reference apps in turn, each with its own
    synthetic row) for a simulated day: events and events per second as n grows.

    The smiless policies use `predictor` here (the LSTM is fitted per app, which at 1,000 apps
    is the predictor's cost, not the simulator's)."""
    catalogue = load_catalogue()
    noise = Noise()
    templates = [load_app(a, sla_s) for a in REFERENCE_APPS]
    out: list[dict[str, object]] = []
    for n in app_counts:
        if progress is not None:
            progress(f"{n} apps")
        rows = synthetic_counts(n, minutes=minutes + history_minutes, seed=seed)
        wls = workloads_from_rows(rows, history_minutes=history_minutes, seed=seed)
        shared: dict[Any, Any] = {}
        t0 = time.perf_counter()
        entries = []
        for i, wl in enumerate(wls):
            app = templates[i % len(templates)].renamed(f"app-{i}")
            ctx = PolicyContext(app, wl, catalogue, noise, shared)
            kwargs: dict[str, Any] = {"predictor": predictor} if policy.startswith("smiless") else {}
            entries.append((app, wl, make_policy(policy, ctx, **kwargs)))
        setup = time.perf_counter() - t0
        res = simulate(entries, catalogue, noise=noise, seed=seed)
        out.append(
            {
                "apps": n,
                "policy": policy,
                "simulated_s": minutes * DEFAULT_SLOT_S,
                "invocations": sum(a.invocations for a in res.apps),
                "events": res.events,
                "decisions": res.decisions,
                "setup_s": setup,
                "sim_wall_s": res.wall_s,
                "events_per_s": res.events_per_s,
                "wall_per_app_ms": 1000.0 * res.wall_s / n if n else 0.0,
                "cost": sum(a.cost for a in res.apps),
            }
        )
    return out


def rows_as_dicts(rows: Iterable[RunRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def by_policy(rows: Iterable[RunRow]) -> Mapping[str, list[RunRow]]:
    out: dict[str, list[RunRow]] = {}
    for r in rows:
        out.setdefault(r.policy, []).append(r)
    return out
