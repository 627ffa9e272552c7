"""The pure parts of the reports: windows, buckets, figures, and the CLI's time parsing."""

from __future__ import annotations

import itertools

import grpc
import pytest
import typer
from google.protobuf.duration_pb2 import Duration

from smiless.cli.report import parse_duration, parse_time
from smiless.server import RpcError
from smiless.services.gateway import reports
from smiless.store import InvocationRecord
from smiless.v1 import common_pb2, gateway_pb2


def test_windows_default_sorted_and_validated() -> None:
    assert reports.windows_of(gateway_pb2.GetStatusRequest()) == [60.0, 300.0, 3600.0]
    req = gateway_pb2.GetStatusRequest(
        windows=[Duration(seconds=300), Duration(seconds=10), Duration(seconds=300)]
    )
    assert reports.windows_of(req) == [10.0, 300.0]
    for bad in (Duration(seconds=0), Duration(seconds=8 * 86400)):
        with pytest.raises(RpcError) as err:
            reports.windows_of(gateway_pb2.GetStatusRequest(windows=[bad]))
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and err.value.message.startswith(
            "windows[0]:"
        )


def test_buckets_cover_the_range_exactly() -> None:
    b = reports._buckets(100.0, 110.0, 3.0)
    assert b[0][0] == 100.0 and b[-1][1] == 110.0 and len(b) == 4
    assert all(x[1] == y[0] for x, y in itertools.pairwise(b))
    assert len(reports._buckets(0.0, 600.0, None)) == reports.DEFAULT_BUCKETS
    assert reports._buckets(5.0, 5.0, None) == []
    with pytest.raises(RpcError):
        reports._buckets(0.0, 86400.0, 1.0)


def _rec(at: float, ms: float, ok: bool = True, cold: bool = False) -> InvocationRecord:
    return InvocationRecord(at, ms, ok, cold, "")


def test_app_status_windows_and_instances() -> None:
    app = gateway_pb2.App(spec=common_pb2.AppSpec(name="a", functions=[common_pb2.FunctionSpec(name="f")]))
    now = 1000.0
    records = [_rec(now - 200, 50, ok=False), _rec(now - 30, 10, cold=True), _rec(now - 5, 20)]
    instances = [
        common_pb2.Instance(app="a", config="cpu-1", state=common_pb2.INSTANCE_STATE_READY),
        common_pb2.Instance(app="a", config="cpu-2", state=common_pb2.INSTANCE_STATE_STARTING),
        common_pb2.Instance(app="other", config="cpu-1", state=common_pb2.INSTANCE_STATE_READY),
    ]
    st = reports.app_status(app, instances, records, None, [60.0, 300.0], now)
    assert dict(st.instances_by_state) == {"READY": 1, "STARTING": 1}
    assert dict(st.instances_by_config) == {"cpu-1": 1, "cpu-2": 1}
    minute, five = st.windows
    assert (minute.invocations, minute.sla_violations, minute.cold_invocations) == (2, 0, 1)
    assert minute.rate == pytest.approx(2 / 60)
    assert (five.invocations, five.sla_violations) == (3, 1)
    assert five.sla_violation_ratio == pytest.approx(1 / 3)
    assert st.invocations == 3 and st.p99_latency.ToNanoseconds() == 50_000_000
    assert not st.HasField("plan")


def test_cli_times() -> None:
    assert parse_duration("15m", "--step") == 900.0
    assert parse_duration("500ms", "--step") == 0.5
    assert parse_time("1h", "--since", 10_000.0) == 6400.0
    assert parse_time("1795900000.5", "--since", 0.0) == 1795900000.5
    assert parse_time("2026-01-01T00:00:00", "--since", 0.0) == 1767225600.0
    assert parse_time("2026-01-01T01:00:00+01:00", "--since", 0.0) == 1767225600.0
    for bad in ("0s", "-5m", "soon"):
        with pytest.raises(typer.Exit):
            parse_duration(bad, "--step")


def test_windows_past_a_capped_read_are_sampled() -> None:
    app = gateway_pb2.App(spec=common_pb2.AppSpec(name="a"))
    now = 1000.0
    records = [_rec(now - 40 + i, 10 + i) for i in range(40)]  # the newest 40 only, 40 s
    st = reports.app_status(app, [], records, None, [30.0, 300.0], now, complete=False)
    short, long = st.windows
    assert not short.sampled and short.invocations == 30 and short.rate == pytest.approx(1.0)
    assert long.sampled and long.invocations == 40
    assert long.rate == pytest.approx(1.0), "rate over the span the records cover, not the window"
