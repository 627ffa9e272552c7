"""`smiless sim` (one app, trace rows, policies, an SLA) and `smiless bench policies` (the
standard matrix, plots and the scale run). Both run the simulator in this process; nothing
needs the services."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smiless.bench.policies import WARMUP_S
from smiless.cli.app import JsonOpt, app, console, fail, print_json

TraceOpt = Annotated[
    Path | None,
    typer.Option(
        help="Azure Functions invocations CSV (default: the 1,250-function sample beside the checkout)."
    ),
]

WarmupOpt = Annotated[
    float, typer.Option(help="Seconds the policies start before the first slot, uncharged.")
]


def _check_warmup(warmup: float) -> None:
    if not (math.isfinite(warmup) and warmup >= 0):
        fail(f"--warmup: must be a number of seconds >= 0, got {warmup!r}")


def _default_trace(trace: Path | None) -> Path:
    if trace is not None:
        return trace
    from smiless.trace import DEFAULT_TRACE

    return DEFAULT_TRACE


def _table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for col in rows[0] if rows else []:
        t.add_column(col)
    for r in rows:
        t.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    return t


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, transient=True,
    )  # fmt: skip


@app.command("sim")
def sim(
    app_name: Annotated[
        str, typer.Option("--app", help="App-spec file or reference app name.")
    ] = "image-query",
    trace: TraceOpt = None,
    rows: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated trace rows (HashFunction prefixes or 0-based indices); "
            "one app each. Default: the benchmark's row for a reference app."
        ),
    ] = None,
    policy: Annotated[str, typer.Option(help="Comma-separated policies (or 'all').")] = "smiless",
    sla: Annotated[float | None, typer.Option(help="SLA in seconds (default: the spec's).")] = None,
    spread: Annotated[str, typer.Option(help="Arrivals in a minute: together | poisson.")] = "together",
    seconds_per_minute: Annotated[float, typer.Option(help="Simulated seconds per trace minute.")] = 2.0,
    history_minutes: Annotated[int, typer.Option(help="Leading minutes used as history only.")] = 720,
    noise_cv: Annotated[float, typer.Option(help="Inference-time coefficient of variation.")] = 0.05,
    exact: Annotated[bool, typer.Option(help="No noise at all (init = μ, inference = model).")] = False,
    warmup: WarmupOpt = WARMUP_S,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Simulate policies on an app driven by Azure trace rows; cost, SLA violations, bound."""
    from smiless.bench.policies import run_one
    from smiless.catalogue import load_catalogue
    from smiless.sim import LOWER_BOUND, POLICY_NAMES, REFERENCE_APPS, Noise, Workload, load_app, select_rows
    from smiless.trace import Spread, TraceError, load_trace

    if spread not in ("together", "poisson"):
        fail(f"--spread: must be together or poisson, got {spread!r}")
    names = list(POLICY_NAMES) if policy == "all" else [p.strip() for p in policy.split(",") if p.strip()]
    for p in names:
        if p not in POLICY_NAMES:
            fail(f"--policy: unknown policy {p!r}; known: {', '.join(POLICY_NAMES)}")
    try:
        base = load_app(app_name, sla)
    except (ValueError, OSError) as exc:
        fail(f"--app: {exc}")
        raise
    path = _default_trace(trace)
    try:
        tr = load_trace(path)
    except (TraceError, OSError) as exc:
        fail(f"--trace: {exc}")
        raise
    if rows is None:
        picks = select_rows(tr, 3)
        chosen = [picks[REFERENCE_APPS.index(base.name)] if base.name in REFERENCE_APPS else picks[1]]
    else:
        chosen = []
        for token in (x.strip() for x in rows.split(",") if x.strip()):
            if token.isdigit():
                if int(token) >= len(tr):
                    fail(f"--rows: index {token} beyond the trace's {len(tr)} rows")
                chosen.append(tr.functions[int(token)])
                continue
            hits = [f for f in tr if f.hash_function.startswith(token)]
            if len(hits) != 1:
                fail(f"--rows: {token!r} matches {len(hits)} rows")
            chosen.append(hits[0])
    if not 0 <= history_minutes < tr.minutes:
        fail(f"--history-minutes: must be in [0, {tr.minutes})")
    if not seconds_per_minute > 0:
        fail("--seconds-per-minute: must be positive")
    _check_warmup(warmup)
    noise = Noise.exact() if exact else Noise(noise_cv)
    spread_t: Spread = "poisson" if spread == "poisson" else "together"
    catalogue = load_catalogue()
    shared: dict[Any, Any] = {}
    out: list[dict[str, Any]] = []
    with _progress() as bar:
        task = bar.add_task("simulating", total=len(chosen) * len(names))
        for row in chosen:
            wl = Workload(row.counts, history_minutes, seconds_per_minute, spread_t, seed, row.hash_function)
            a = base if len(chosen) == 1 else base.renamed(f"{base.name}-{row.hash_function[:8]}")
            for p in names:
                bar.update(task, description=f"{a.name} {p}")
                r, _ = run_one(a, wl, p, catalogue, noise, seed=seed, shared=shared, warmup_s=warmup)
                d = {k: v for k, v in r.__dict__.items()}
                out.append(d)
                bar.advance(task)
    if as_json:
        print_json(out)
        return
    keep = (
        "app",
        "policy",
        "cost",
        "cost_vs_lower_bound",
        "violation_ratio",
        "p99_ms",
        "cold_starts",
        "invocations",
    )
    console.print(_table([{k: r[k] for k in keep} for r in out], f"simulation, SLA {base.sla_s:g} s"))
    if LOWER_BOUND not in names:
        console.print("cost_vs_lower_bound: cost / the clairvoyant lower bound (smiless.sim.lowerbound)")


def bench_policies(
    trace: TraceOpt = None,
    policies: Annotated[str, typer.Option(help="Comma-separated policies (default: all).")] = "all",
    slas: Annotated[str, typer.Option(help="Comma-separated SLAs in seconds.")] = "2,3,4,5,6",
    spread: Annotated[str, typer.Option(help="together | poisson.")] = "together",
    plots: Annotated[Path, typer.Option(help="Folder for the PNG plots.")] = Path("bench-policies"),
    matrix: Annotated[bool, typer.Option(help="Run the standard matrix.")] = True,
    scale: Annotated[
        str, typer.Option(help="Comma-separated app counts for the scale run (e.g. 10,100,1000).")
    ] = "",
    scale_minutes: Annotated[int, typer.Option(help="Simulated trace minutes of the scale run.")] = 1440,
    scale_policy: Annotated[str, typer.Option(help="Policy of the scale run.")] = "smiless",
    warmup: WarmupOpt = WARMUP_S,
    seed: Annotated[int, typer.Option()] = 0,
    row_sets: Annotated[
        str, typer.Option(help="Comma-separated trace row sets: tuning, held-out (default: both).")
    ] = "tuning,held-out",
    as_json: JsonOpt = False,
) -> None:
    """Every policy x the three reference apps x SLA 2-6 s in the simulator, against the
    clairvoyant lower bound; summary table, plots; optionally the scale run."""
    from smiless.bench import policies as bp
    from smiless.sim import POLICY_NAMES
    from smiless.trace import TraceError

    names = list(bp.MATRIX_POLICIES) if policies == "all" else [p.strip() for p in policies.split(",")]
    for p in names:
        if p not in POLICY_NAMES:
            fail(f"--policies: unknown policy {p!r}")
    if scale_policy not in POLICY_NAMES or scale_policy == "lower-bound":
        fail(f"--scale-policy: unknown policy {scale_policy!r}")
    try:
        sla_list = [float(s) for s in slas.split(",") if s.strip()]
        counts = [int(s) for s in scale.split(",") if s.strip()]
    except ValueError as exc:
        fail(f"--slas/--scale: {exc}")
        raise
    if spread not in ("together", "poisson"):
        fail(f"--spread: must be together or poisson, got {spread!r}")
    _check_warmup(warmup)
    sets = [s.strip() for s in row_sets.split(",") if s.strip()]
    if not sets or any(s not in bp.ROW_SETS for s in sets):
        fail(f"--row-sets: {row_sets!r} is not a comma-separated list of {', '.join(bp.ROW_SETS)}")
    result: dict[str, Any] = {}
    if matrix:
        with _progress() as bar:
            runs = sum(bp.ROWS_PER_APP[s] for s in sets) * 3 * len(sla_list) * len(names)
            task = bar.add_task("matrix", total=runs)

            def step(what: str) -> None:
                bar.update(task, description=what)
                bar.advance(task)

            try:
                m = bp.run_matrix(
                    _default_trace(trace),
                    slas=sla_list,
                    policies=names,
                    spread="poisson" if spread == "poisson" else "together",
                    seed=seed,
                    progress=step,
                    warmup_s=warmup,
                    row_sets=[s for s in bp.ROW_SETS if s in sets],
                )
            except (TraceError, OSError) as exc:
                fail(f"--trace: {exc}")
                raise
        result["runs"] = bp.rows_as_dicts(m.rows)
        result["summary"] = bp.summarize(m.rows)
        result["plots"] = [str(p) for p in bp.plot(m, plots)]
    if counts:
        with _progress() as bar:
            task = bar.add_task("scale", total=len(counts))

            def sstep(what: str) -> None:
                bar.update(task, description=what)
                bar.advance(task)

            result["scale"] = bp.run_scale(
                counts, policy=scale_policy, minutes=scale_minutes, seed=seed, progress=sstep
            )
    if as_json:
        print_json(result)
        return
    if "runs" in result:
        keep = (
            "app",
            "sla_s",
            "policy",
            "cost",
            "cost_vs_lower_bound",
            "violation_ratio",
            "p99_ms",
            "cold_starts",
        )
        console.print(_table([{k: r[k] for k in keep} for r in result["runs"]], "policies in the simulator"))
        console.print(_table(result["summary"], "smiless against the rivals"))
        console.print("plots: " + ", ".join(result["plots"]))
    if "scale" in result:
        console.print(_table(result["scale"], "simulator scale (synthetic apps, one simulated day)"))
