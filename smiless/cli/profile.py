"""`smiless profile`: measure a model (progress bar), show its stored profile, plot it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smiless.cli.app import JsonOpt, app, connect, console, fail, print_json, to_dict
from smiless.protoutil import get_seconds
from smiless.v1 import common_pb2, profiler_pb2, profiler_pb2_grpc

KIND = {common_pb2.HARDWARE_KIND_CPU: "cpu", common_pb2.HARDWARE_KIND_GPU: "gpu"}


def render(p: profiler_pb2.Profile) -> None:
    inf = p.inference
    console.print(
        f"[bold]{p.model}[/bold] on {KIND.get(p.kind, '?')} ({', '.join(p.configs)}), version {p.version}: "
        f"T(B, r) = {inf.lam:.4g}·B·({inf.alpha:.3f}/r + {inf.beta:.3f}) + {inf.gamma:.4g} s, "
        f"held-out MAPE {inf.mape:.1%}"
    )
    phases = Table(title="init phases")
    for col in ("phase", "μ ms", "σ ms"):
        phases.add_column(col)
    for ph in p.init_phases:
        phases.add_row(ph.name, f"{get_seconds(ph.mean) * 1000:.1f}", f"{get_seconds(ph.stddev) * 1000:.1f}")
    total_mu = sum(get_seconds(ph.mean) for ph in p.init_phases)
    total_sd = sum(get_seconds(ph.stddev) ** 2 for ph in p.init_phases) ** 0.5
    phases.add_row("[bold]total[/bold]", f"{total_mu * 1000:.1f}", f"{total_sd * 1000:.1f}")
    console.print(phases)
    points = Table(title="warm latency")
    for col in ("config", "batch", "median ms", "p10 ms", "p90 ms", "reps", "model ms"):
        points.add_column(col)
    for pt in p.points:
        r = float(pt.config.split("-")[-1]) if pt.config.split("-")[-1].isdigit() else 1.0
        model_ms = (inf.lam * pt.batch_size * (inf.alpha / r + inf.beta) + inf.gamma) * 1000
        points.add_row(
            pt.config,
            str(pt.batch_size),
            f"{get_seconds(pt.median) * 1000:.2f}",
            f"{get_seconds(pt.p10) * 1000:.2f}",
            f"{get_seconds(pt.p90) * 1000:.2f}",
            str(pt.repetitions),
            f"{model_ms:.2f}",
        )
    console.print(points)
    for note in p.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def plot(profiles: list[profiler_pb2.Profile], out: Path) -> None:
    """Measured medians (with p10–p90 bars) against the fitted curve, per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in profiles:
        inf = p.inference
        for config in sorted({pt.config for pt in p.points}):
            pts = sorted((pt for pt in p.points if pt.config == config), key=lambda pt: pt.batch_size)
            r = float(config.split("-")[-1])
            b = [pt.batch_size for pt in pts]
            med = [get_seconds(pt.median) * 1000 for pt in pts]
            lo = [m - get_seconds(pt.p10) * 1000 for m, pt in zip(med, pts, strict=True)]
            hi = [get_seconds(pt.p90) * 1000 - m for m, pt in zip(med, pts, strict=True)]
            line = ax.errorbar(b, med, yerr=[lo, hi], fmt="o", capsize=3, label=f"{config} measured")
            xs = [x / 4 for x in range(4, 4 * max(b) + 1)]
            ax.plot(
                xs,
                [(inf.lam * x * (inf.alpha / r + inf.beta) + inf.gamma) * 1000 for x in xs],
                color=line[0].get_color(),
                alpha=0.7,
                label=f"{config} fit",
            )
        ax.set_title(f"{p.model}: T(B, r) fit, held-out MAPE {inf.mape:.1%}")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


@app.command()
def profile(
    model: Annotated[str, typer.Argument(help="Zoo model name.")],
    configs: Annotated[
        str, typer.Option(help="Comma-separated configs; default: every runnable CPU config.")
    ] = "",
    cold_starts: Annotated[int, typer.Option(help="Cold starts per config.")] = 10,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes; default 1,2,4,8,16.")] = "",
    force: Annotated[bool, typer.Option(help="Store the fit even above the MAPE threshold.")] = False,
    show: Annotated[bool, typer.Option(help="Only show the stored profile; measure nothing.")] = False,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of points against the fit.")
    ] = None,
    profiler: Annotated[
        str | None, typer.Option(envvar="SMILESS_PROFILER_ADDR", help="Profiler address.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Profile a model (resumable: run it again after an interruption) or show its profile."""
    try:
        batches = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        fail(f"--batch-sizes: {batch_sizes!r} is not a comma-separated list of integers")
        raise
    with connect("profiler", profiler) as channel:
        stub = profiler_pb2_grpc.ProfilerStub(channel)
        try:
            if show:
                found = list(
                    stub.GetProfile(profiler_pb2.GetProfileRequest(model=model), timeout=10).profiles
                )
            else:
                req = profiler_pb2.ProfileFunctionRequest(
                    model=model,
                    configs=[c for c in configs.split(",") if c],
                    cold_starts=cold_starts,
                    batch_sizes=batches,
                    force=force,
                )
                found = []
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                )
                with Progress(*columns, console=console, transient=as_json) as bar:
                    task = bar.add_task(f"profiling {model}", total=None)
                    for msg in stub.ProfileFunction(req, timeout=3600):
                        bar.update(
                            task, completed=msg.done, total=msg.total, description=f"{model}: {msg.step}"
                        )
                        found = list(msg.profiles) or found
        except grpc.RpcError as exc:
            fail(f"{exc.code().name}: {exc.details()}")
    if plot_path is not None:
        plot(found, plot_path)
    if as_json:
        print_json([to_dict(p) for p in found])
        return
    for p in found:
        render(p)
    if plot_path is not None:
        console.print(f"plot written to {plot_path}")
