"""`smiless predict APP`: the predictor's current forecast for an app."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.table import Table

from smiless.cli.app import JsonOpt, app, connect, console, fail, print_json, secs, to_dict
from smiless.protoutil import set_seconds
from smiless.trace import DEFAULT_TRACE
from smiless.v1 import predictor_pb2, predictor_pb2_grpc


@app.command()
def predict(
    name: Annotated[str, typer.Argument(help="App name.")],
    predictor: Annotated[str | None, typer.Option(envvar="SMILESS_PREDICTOR_ADDR")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Next inter-arrival time, invocation count and keep-alive, and which model answered."""
    with connect("predictor", predictor) as ch:
        try:
            p = predictor_pb2_grpc.PredictorStub(ch).Predict(
                predictor_pb2.PredictRequest(app=name), timeout=30
            )
        except grpc.RpcError as exc:
            fail(f"{exc.code().name}: {exc.details()}")
            raise
    if as_json:
        print_json(to_dict(p))
        return
    t = Table(title=f"{name}: forecast")
    for col in ("next IT s", "median IT s", "count", "keep-alive s", "model", "recent sMAPE", "slot s"):
        t.add_column(col)
    t.add_row(
        f"{secs(p.next_it):.3g}",
        f"{secs(p.next_it_median):.3g}" if p.HasField("next_it_median") else "-",
        str(p.count),
        f"{secs(p.keep_alive):.3g}",
        p.model,
        f"{p.recent_error:.3f}",
        f"{secs(p.slot):g}",
    )
    console.print(t)
    if p.reason:
        console.print(f"[yellow]note:[/yellow] {p.reason}")


history_app = typer.Typer(help="An app's invocation history.", no_args_is_help=True)
app.add_typer(history_app, name="history")


@history_app.command("load")
def history_load(
    name: Annotated[str, typer.Argument(help="App name.")],
    row: Annotated[str, typer.Option(help="HashFunction of the row, or its 0-based index.")],
    trace: Annotated[
        Path, typer.Option(help="Azure Functions invocations CSV or .csv.gz (default: the shipped sample).")
    ] = DEFAULT_TRACE,
    seconds_per_minute: Annotated[float, typer.Option(help="One trace minute lasts this long.")] = 2.0,
    minutes: Annotated[int | None, typer.Option(help="Load only the last N trace minutes.")] = None,
    spread: Annotated[str, typer.Option(help="together | poisson (within each minute).")] = "together",
    replace: Annotated[bool, typer.Option(help="Drop the recorded history first.")] = False,
    predictor: Annotated[str | None, typer.Option(envvar="SMILESS_PREDICTOR_ADDR")] = None,
) -> None:
    """Load a trace row as an app's history, compressed in time and ending now."""
    from smiless.trace import TraceError, arrivals_from_counts, load_trace

    try:
        loaded = load_trace(trace)
    except (TraceError, OSError) as exc:
        fail(f"--trace: {exc}")
        raise
    try:
        fn = loaded.functions[int(row)] if row.isdigit() else loaded.function(row)
    except (IndexError, KeyError):
        fail(f"--row: {row!r} is neither a HashFunction nor an index below {len(loaded)}")
        raise
    counts = fn.counts[-minutes:] if minutes else fn.counts
    if spread not in ("together", "poisson"):
        fail(f"--spread: {spread!r} is not together or poisson")
    start = time.time() - len(counts) * seconds_per_minute
    times = arrivals_from_counts(counts, seconds_per_minute, spread=spread, start=start)  # type: ignore[arg-type]
    req = predictor_pb2.LoadHistoryRequest(app=name, replace=replace)
    for t in times:
        set_seconds(req.arrivals.add(), float(t))
    with connect("predictor", predictor) as ch:
        try:
            resp = predictor_pb2_grpc.PredictorStub(ch).LoadHistory(req, timeout=60)
        except grpc.RpcError as exc:
            fail(f"{exc.code().name}: {exc.details()}")
            raise
    console.print(
        f"loaded {resp.loaded} arrivals of {fn.hash_function[:12]}… into {name} "
        f"({len(counts)} trace minutes over {len(counts) * seconds_per_minute:.0f} s)"
    )
