"""`smiless plan APP`: the optimizer's plan for an app, with what it rejected and why."""

from __future__ import annotations

from typing import Annotated

import grpc
import typer
from rich.table import Table

from smiless.cli.app import JsonOpt, app, connect, console, fail, print_json, secs, to_dict
from smiless.v1 import common_pb2, optimizer_pb2, optimizer_pb2_grpc

MODES = {
    common_pb2.COLD_START_MODE_PREWARM: "pre-warm",
    common_pb2.COLD_START_MODE_KEEP_ALIVE: "keep-alive",
    common_pb2.COLD_START_MODE_SCALED: "scaled",
}


@app.command()
def plan(
    name: Annotated[str, typer.Argument(help="App name.")],
    rejected: Annotated[bool, typer.Option(help="Also list every rejected option.")] = False,
    optimizer: Annotated[str | None, typer.Option(envvar="SMILESS_OPTIMIZER_ADDR")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan an app now and explain the choice per function."""
    with connect("optimizer", optimizer) as ch:
        try:
            resp = optimizer_pb2_grpc.OptimizerStub(ch).ExplainPlan(
                optimizer_pb2.ExplainPlanRequest(app=name), timeout=60
            )
        except grpc.RpcError as exc:
            fail(f"{exc.code().name}: {exc.details()}")
            raise
    if as_json:
        print_json(to_dict(resp))
        return
    p = resp.plan
    verdict = "meets the SLA" if p.feasible else "[red]cannot meet the SLA[/red]"
    console.print(
        f"[bold]{p.app}[/bold]: predicted {secs(p.predicted_latency) * 1000:.0f} ms, {verdict}; "
        f"cost {p.predicted_cost:.3g} per invocation; "
        f"forecast IT {secs(p.forecast_it):.3g} s × {p.forecast_count}"
    )
    if p.reason:
        console.print(p.reason)
    t = Table()
    for col in (
        "function",
        "config",
        "mode",
        "latency ms",
        "ready at ms",
        "init s",
        "pre-warm s",
        "keep-alive s",
        "batch",
        "instances",
        "cost",
    ):
        t.add_column(col)
    for fp in p.functions:
        t.add_row(
            fp.function,
            fp.config,
            MODES.get(fp.mode, "?"),
            f"{secs(fp.latency) * 1000:.1f}",
            f"{secs(fp.ready_offset) * 1000:.0f}",
            f"{secs(fp.init):.2f}",
            f"{secs(fp.prewarm_window):.2f}",
            f"{secs(fp.keep_alive):.2f}",
            str(fp.batch_size),
            str(fp.instances),
            f"{fp.cost:.3g}",
        )
    console.print(t)
    if rejected:
        r = Table(title="rejected")
        for col in ("function", "config", "mode", "cost", "latency ms", "why"):
            r.add_column(col)
        for fe in resp.functions:
            for ro in fe.rejected:
                r.add_row(
                    fe.chosen.function,
                    ro.config,
                    MODES.get(ro.mode, ""),
                    f"{ro.cost:.3g}",
                    f"{secs(ro.latency) * 1000:.1f}",
                    ro.reason,
                )
        console.print(r)
