"""Status and cost reports against the real stack (process workers, real Redis), read
through the CLI as a user would; the cost total is recomputed here from Redis on its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from smiless import appspec, tensors, zoo
from smiless.protoutil import set_seconds
from smiless.stack import LocalStack
from smiless.store import InvocationRecord, Store
from smiless.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.waiting import wait_until_sync

APP = "report-chain"
N_INVOKE = 6


def _cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smiless", *args, "--gateway", stack.addresses["gateway"]],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _json(stack: LocalStack, *args: str) -> Any:
    out = _cli(stack, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def gw(stack: LocalStack) -> Iterator[gateway_pb2_grpc.GatewayStub]:
    with grpc.insecure_channel(stack.addresses["gateway"]) as ch:
        yield gateway_pb2_grpc.GatewayStub(ch)


@pytest.fixture(scope="module")
def invoked(stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub) -> float:
    """A two-stage app invoked N_INVOKE times (the first one cold); returns the time before."""
    began = time.time()
    spec = appspec.validate(
        appspec.from_dict(
            {
                "name": APP,
                "sla": "30s",
                "functions": [{"name": "a", "model": "tiny-mlp"}, {"name": "b", "model": "tiny-mlp"}],
                "edges": [["a", "b"]],
            }
        )
    )
    gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10)
    x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
    for _ in range(N_INVOKE):
        gw.Invoke(gateway_pb2.InvokeRequest(app=APP, input=x), timeout=120)
    # Invocation records are written off the hot path: wait for the buffered flush.
    wait_until_sync(
        lambda: (
            gw.GetStatus(gateway_pb2.GetStatusRequest(app=APP), timeout=10).apps[0].invocations >= N_INVOKE
        ),
        20,
        "every invocation record in Redis",
        0.2,
    )
    return began


def _independent_total(redis_url: str, since: float, until: float) -> tuple[float, dict[str, float]]:
    """Σ clip(lifetime, [since, until]) × price / 3600, read straight from the lifetimes hash."""
    total, by_app = 0.0, dict[str, float]()
    with redis.Redis.from_url(redis_url) as r:
        for raw in r.hgetall("smiless:lifetimes").values():
            inst = common_pb2.Instance.FromString(raw)
            start = inst.started_at.seconds + inst.started_at.nanos / 1e9
            stop = (
                inst.stopped_at.seconds + inst.stopped_at.nanos / 1e9
                if inst.HasField("stopped_at")
                else until
            )
            secs = max(0.0, min(stop, until) - max(start, since))
            total += secs * inst.price_per_hour / 3600.0
            by_app[inst.app] = by_app.get(inst.app, 0.0) + secs * inst.price_per_hour / 3600.0
    return total, by_app


@pytest.mark.e2e
def test_cost_json_totals_equal_lifetimes_times_prices(
    stack: LocalStack, invoked: float, tmp_path: Path
) -> None:
    since, until = round(invoked - 5.0, 3), round(time.time(), 3)
    doc = _json(stack, "cost", "--since", f"{since:.3f}", "--until", f"{until:.3f}")
    expected, by_app = _independent_total(str(stack.redis_url), since, until)
    assert expected > 0, "the invocations started instances that cost something"
    assert doc["total_cost"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    apps = {a["app"]: a for a in doc["apps"]}
    assert set(by_app) <= set(apps), "every app with instance time is in the report"
    app = apps[APP]
    assert app["cost"] == pytest.approx(by_app[APP], rel=1e-6)
    assert int(app["invocations"]) == N_INVOKE
    assert app["cost_per_1000"] == pytest.approx(app["cost"] / N_INVOKE * 1000, rel=1e-9)
    fns = {f["function"]: f for f in app["functions"]}
    assert set(fns) == {"a", "b"}
    assert sum(f["cost"] for f in fns.values()) == pytest.approx(app["cost"], rel=1e-9)
    for f in fns.values():
        assert int(f["cold_starts"]) >= 1, "the first invocation started each stage's instance"
        assert sum(f["instance_seconds"].values()) > 0
        assert f["cost_per_1000"] == pytest.approx(f["cost"] / N_INVOKE * 1000, rel=1e-9)
    assert int(app["cold_invocations"]) >= 1
    series_cost = sum(p["cost"] for p in app["series"])
    assert series_cost == pytest.approx(app["cost"], rel=1e-6), "the time series adds up to the total"
    assert sum(int(p["invocations"]) for p in app["series"]) == N_INVOKE

    # the same report as tables and as a plot
    out = _cli(
        stack,
        "cost",
        APP,
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        "--plot",
        str(tmp_path / "c.png"),
    )
    assert out.returncode == 0, out.stderr
    assert APP in out.stdout and "cost / 1000" in out.stdout
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_deleted_app_still_counts(
    stack: LocalStack, gw: gateway_pb2_grpc.GatewayStub, invoked: float
) -> None:
    """An app deleted after it ran keeps its instance cost in the all-apps total."""
    ghost = appspec.validate(
        appspec.from_dict(
            {"name": "report-ghost", "sla": 10, "functions": [{"name": "m", "model": "tiny-mlp"}]}
        )
    )
    gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(ghost), replace=True), timeout=10)
    x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
    gw.Invoke(gateway_pb2.InvokeRequest(app="report-ghost", input=x), timeout=120)
    until = time.time()
    req = gateway_pb2.GetCostReportRequest()
    set_seconds(req.end, until)
    before = gw.GetCostReport(req, timeout=10)
    gw.DeleteApp(gateway_pb2.DeleteAppRequest(name="report-ghost"), timeout=10)
    after = gw.GetCostReport(req, timeout=10)
    ghosts = [a for a in after.apps if a.app == "report-ghost"]
    assert ghosts and ghosts[0].deleted and ghosts[0].cost > 0
    assert after.total_cost == pytest.approx(before.total_cost, rel=1e-9)
    one = gateway_pb2.GetCostReportRequest(app="report-ghost")
    one.end.CopyFrom(req.end)
    assert gw.GetCostReport(one, timeout=10).apps[0].deleted


@pytest.mark.e2e
def test_status_windows_plan_and_instances(stack: LocalStack, invoked: float) -> None:
    doc = _json(stack, "status", APP, "--window", "1h", "--window", "30s")
    app = doc["apps"][0]
    assert app["name"] == APP
    windows = app["windows"]
    assert [w["window"] for w in windows] == ["30s", "3600s"]
    hour = windows[1]
    assert int(hour["invocations"]) == N_INVOKE == int(app["invocations"])
    assert hour["rate"] == pytest.approx(N_INVOKE / 3600.0)
    assert hour["sla_violation_ratio"] == 0.0 and int(hour["cold_invocations"]) >= 1
    assert float(hour["p99_latency"].rstrip("s")) >= float(hour["p50_latency"].rstrip("s")) > 0
    by_state = {k: int(v) for k, v in app["instances_by_state"].items()}
    assert sum(by_state.values()) == len(app["instances"])
    assert set(by_state) <= {"STARTING", "READY", "DRAINING"}
    assert sum(int(v) for v in app["instances_by_config"].values()) == len(app["instances"])
    table = _cli(stack, "status")
    assert table.returncode == 0 and APP in table.stdout and "rate /s" in table.stdout


@pytest.mark.parametrize(
    ("rpc", "request_", "code", "field"),
    [
        (
            "GetStatus",
            gateway_pb2.GetStatusRequest(windows=[Duration(seconds=-1)]),
            "INVALID_ARGUMENT",
            "windows[0]",
        ),
        ("GetStatus", gateway_pb2.GetStatusRequest(app="no-such-app"), "NOT_FOUND", "app"),
        ("GetCostReport", gateway_pb2.GetCostReportRequest(app="no-such-app"), "NOT_FOUND", "app"),
        (
            "GetCostReport",
            gateway_pb2.GetCostReportRequest(
                start=Timestamp(seconds=2_000_000_000), end=Timestamp(seconds=1_000_000_000)
            ),
            "INVALID_ARGUMENT",
            "end",
        ),
        (
            "GetCostReport",
            gateway_pb2.GetCostReportRequest(
                start=Timestamp(seconds=1_000_000_000),
                end=Timestamp(seconds=1_000_086_400),
                step=Duration(nanos=1_000_000),
            ),
            "INVALID_ARGUMENT",
            "step",
        ),
    ],
)
@pytest.mark.e2e
def test_report_bad_input(
    gw: gateway_pb2_grpc.GatewayStub, rpc: str, request_: Any, code: str, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        getattr(gw, rpc)(request_, timeout=10)
    assert err.value.code().name == code
    assert err.value.details().startswith(f"{field}:")


@pytest.mark.e2e
def test_cli_bad_times(stack: LocalStack) -> None:
    out = _cli(stack, "cost", "--since", "yesterday-ish")
    assert out.returncode == 1 and "--since" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("command", ["status", "cost"])
def test_watch_refreshes_until_interrupted(stack: LocalStack, invoked: float, command: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smiless",
            command,
            "--watch",
            "--every",
            "0.3",
            "--json",
            "--gateway",
            stack.addresses["gateway"],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        docs = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, "Ctrl-C ends the watch cleanly"
    assert all(APP in {a.get("name", a.get("app")) for a in d["apps"]} for d in docs)


async def test_store_reads_invocations_in_pages(redis_url: str) -> None:
    """Paged reads return every record once, in order; the capped read the newest ones."""
    store = Store(redis_url)
    try:
        odd = ["a b", 'q"uo\\te', "new\nline", "ünï/cødé", ""]  # client-chosen ids survive the read
        records = [
            InvocationRecord(1_700_000_000 + i * 0.01, i + 0.25, i % 3 != 0, i % 4 == 0, f"r{i}{odd[i % 5]}")
            for i in range(50)
        ]
        await store.record_invocations("paged", records, 1000)
        got = await store.invocations("paged", page=7)
        assert got == [
            InvocationRecord(round(r.at, 3), r.latency_ms, r.sla_met, r.cold, r.request_id) for r in records
        ]
        assert await store.invocations("no-such-app") == []
        recent = await store.recent_invocations("paged", 0.0, limit=20, page=7)
        assert [r.request_id for r in recent] == [r.request_id for r in records[-20:]]
        since = await store.recent_invocations("paged", records[45].at, limit=20, page=7)
        assert [r.request_id for r in since] == [r.request_id for r in records[45:]]
    finally:
        await store.close()
