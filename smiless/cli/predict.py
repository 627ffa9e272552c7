"""`smiless predict APP`: the predictor's current forecast for an app."""

from __future__ import annotations

from typing import Annotated

import grpc
import typer
from rich.table import Table

from smiless.cli.main import JsonOpt, app, console, fail, print_json, secs, to_dict
from smiless.config import Settings
from smiless.v1 import predictor_pb2, predictor_pb2_grpc


@app.command()
def predict(
    name: Annotated[str, typer.Argument(help="App name.")],
    predictor: Annotated[str | None, typer.Option(envvar="SMILESS_PREDICTOR_ADDR")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Next inter-arrival time, invocation count and keep-alive, and which model answered."""
    addr = predictor or Settings().predictor_addr
    with grpc.insecure_channel(addr) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=5)
        except grpc.FutureTimeoutError:
            fail(f"cannot reach the predictor at {addr}: is `smiless up` running?")
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
    for col in ("next IT s", "count", "keep-alive s", "model", "recent sMAPE", "slot s"):
        t.add_column(col)
    t.add_row(
        f"{secs(p.next_it):.3g}",
        str(p.count),
        f"{secs(p.keep_alive):.3g}",
        p.model,
        f"{p.recent_error:.3f}",
        f"{secs(p.slot):g}",
    )
    console.print(t)
    if p.reason:
        console.print(f"[yellow]note:[/yellow] {p.reason}")
