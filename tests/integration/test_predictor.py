"""The predictor on live history: arrivals recorded by the real gateway in real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from smiless import appspec, tensors, zoo
from smiless.cli.stack import LocalStack, free_port
from smiless.config import SERVICE_NAMES
from smiless.v1 import gateway_pb2, gateway_pb2_grpc, predictor_pb2, predictor_pb2_grpc

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
    x = tensors.to_proto(zoo.MODELS["tiny-mlp"].example_input())
    start = time.monotonic()
    for i in range(n):
        delay = start + i * every_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        gw.Invoke(gateway_pb2.InvokeRequest(app="pulse", input=x), timeout=60)


def _trained_it(pred: predictor_pb2_grpc.PredictorStub, timeout: float = 60) -> float:
    """The predicted IT (s) once a trained model (not the cold-start rule) answers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = pred.Predict(predictor_pb2.PredictRequest(app="pulse"), timeout=10)
        if p.model == "smiless" and not p.reason:
            return float(p.next_it.ToNanoseconds()) / 1e9
        time.sleep(0.5)
    raise AssertionError(f"no trained prediction within {timeout} s (last: {p})")


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
        _send(gw, 1, 0)  # the cold start of the worker, before the patterns
        _send(gw, 45, 1 * SLOT)  # pattern A: every slot
        it_a = _trained_it(pred)
        _send(gw, 40, 6 * SLOT)  # pattern B: every sixth slot
        it_b = _trained_it(pred)
        assert it_a <= 2 * SLOT + 1e-9, f"pattern A arrives every slot, predicted {it_a} s"
        assert it_b >= 3 * SLOT, f"pattern B arrives every 6 slots, predicted {it_b} s"
        deadline = time.time() + 5  # arrivals reach Redis in buffered batches
        while len(pred.GetHistory(predictor_pb2.GetHistoryRequest(app="pulse"), timeout=10).arrivals) < 86:
            assert time.time() < deadline, "every arrival is recorded"
            time.sleep(0.1)
