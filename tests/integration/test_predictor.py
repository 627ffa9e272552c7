"""The predictor on live history: arrivals recorded by the real gateway in real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from smiless import appspec, tensors, zoo
from smiless.config import SERVICE_NAMES
from smiless.stack import LocalStack, free_port
from smiless.v1 import gateway_pb2, gateway_pb2_grpc, predictor_pb2, predictor_pb2_grpc
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.e2e  # every test here runs against the whole stack

SLOT = 0.1


@pytest.fixture(scope="module")
def fast_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack whose predictor uses 100 ms slots and retrains often, so a test can change
    an app's arrival pattern within seconds."""
    env = {
        "SMILESS_SLOT_S": str(SLOT),
        "SMILESS_PREDICTOR_TRAIN_INTERVAL_S": "0.5",
        "SMILESS_PREDICTOR_RETRAIN_ARRIVALS": "15",
    }
    s = LocalStack(
        Path(tmp_path_factory.mktemp("pred")), ports={n: free_port() for n in SERVICE_NAMES}, extra_env=env
    )
    s.start()
    yield s
    s.stop()


def _send(gw: gateway_pb2_grpc.GatewayStub, n: int, every_s: float) -> None:
    """`n` invocations `every_s` apart, each sent without waiting for the one before: the
    arrival pattern must not stretch when a slow machine answers later than `every_s`."""
    x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
    start = time.monotonic()
    calls = []
    for i in range(n):
        delay = start + i * every_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        calls.append(gw.Invoke.future(gateway_pb2.InvokeRequest(app="pulse", input=x), timeout=60))
    for call in calls:
        call.result()


def _trained_it(pred: predictor_pb2_grpc.PredictorStub, timeout: float = 60) -> float:
    """The predicted IT (s) once a trained model (not the cold-start rule) answers."""

    def trained() -> predictor_pb2.PredictResponse | None:
        p = pred.Predict(predictor_pb2.PredictRequest(app="pulse"), timeout=10)
        return p if p.model == "smiless" and not p.reason else None

    p = wait_until_sync(trained, timeout, "a trained prediction", 0.5)
    return float(p.next_it.ToNanoseconds()) / 1e9


def test_predicted_it_follows_the_arrival_pattern(fast_stack: LocalStack) -> None:
    spec = appspec.AppSpec("pulse", 2.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
    with (
        grpc.insecure_channel(fast_stack.addresses["gateway"]) as gch,
        grpc.insecure_channel(fast_stack.addresses["predictor"]) as pch,
    ):
        gw = gateway_pb2_grpc.GatewayStub(gch)
        pred = predictor_pb2_grpc.PredictorStub(pch)
        gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec)), timeout=10)
        first = pred.Predict(predictor_pb2.PredictRequest(app="pulse"), timeout=10)
        assert first.model == "cold-start" and first.reason, "no history: the cold-start rule says so"
        assert first.burst.ToNanoseconds() == first.slot.ToNanoseconds(), "a burst may take the slot"
        _send(gw, 1, 0)  # the cold start of the worker, before the patterns
        _send(gw, 45, 1 * SLOT)  # pattern A: every slot
        it_a = _trained_it(pred)
        _send(gw, 40, 6 * SLOT)  # pattern B: every sixth slot
        it_b = _trained_it(pred)
        # pattern B's invocations come one at a time, six slots apart: no spread to wait for
        after_b = pred.Predict(predictor_pb2.PredictRequest(app="pulse"), timeout=10)
        assert after_b.HasField("burst") and after_b.burst.ToNanoseconds() == 0
        assert round(it_a / SLOT) <= 2, f"pattern A arrives every slot, predicted {it_a} s"
        assert round(it_b / SLOT) >= 3, f"pattern B arrives every 6 slots, predicted {it_b} s"
        wait_until_sync(  # arrivals reach Redis in buffered batches
            lambda: (
                len(pred.GetHistory(predictor_pb2.GetHistoryRequest(app="pulse"), timeout=10).arrivals) >= 86
            ),
            5,
            "every arrival recorded",
            0.1,
        )


def test_load_history_from_a_trace(stack: LocalStack, tmp_path: Path) -> None:
    spec = appspec.AppSpec("traced", 2.0, (appspec.FunctionSpec("m", "tiny-mlp"),))
    header = "HashFunction,HashApp,HashOwner," + ",".join(f"minute_{i}" for i in range(1, 1441))
    counts = [0] * 1440
    counts[-3:] = [2, 0, 1]
    trace = tmp_path / "trace.csv"
    trace.write_text(header + "\nf1,a1,o1," + ",".join(map(str, counts)) + "\n")
    env = {**os.environ, "SMILESS_PREDICTOR_ADDR": stack.addresses["predictor"]}
    with (
        grpc.insecure_channel(stack.addresses["gateway"]) as gch,
        grpc.insecure_channel(stack.addresses["predictor"]) as pch,
    ):
        gateway_pb2_grpc.GatewayStub(gch).RegisterApp(
            gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10
        )
        pred = predictor_pb2_grpc.PredictorStub(pch)
        args = [
            sys.executable,
            "-m",
            "smiless",
            "history",
            "load",
            "traced",
            "--trace",
            str(trace),
            "--row",
            "f1",
        ]
        out = subprocess.run(
            [*args, "--minutes", "3", "--replace"], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        hist = pred.GetHistory(predictor_pb2.GetHistoryRequest(app="traced"), timeout=10).arrivals
        times = [t.ToNanoseconds() / 1e9 for t in hist]
        assert (
            len(times) == 3 and times[0] == times[1] and times[2] - times[0] == pytest.approx(4.0, abs=0.01)
        )
        # not newer than what is recorded, out of order, in the future: refused, nothing loaded
        now = time.time()
        for stamps, field in (
            ([now - 100], "arrivals[0]"),
            ([now - 1, now - 2], "arrivals[1]"),
            ([now + 60], "arrivals[0]"),
        ):
            req = predictor_pb2.LoadHistoryRequest(app="traced")
            for t in stamps:
                req.arrivals.add().FromNanoseconds(round(t * 1e9))
            with pytest.raises(grpc.RpcError) as info:
                pred.LoadHistory(req, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith(field)
        assert len(pred.GetHistory(predictor_pb2.GetHistoryRequest(app="traced"), timeout=10).arrivals) == 3
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\nf1,a1,o1," + ",".join(["1"] * 1439 + ["-4"]) + "\n")
    out = subprocess.run(
        [*args[:-4], "--trace", str(bad), "--row", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "bad.csv:2:" in out.stderr.replace("\n", ""), "the error names the line"
