"""The gateway's compiled app (pure: no stack): what the data path reads on each invocation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from smiless import appspec, tensors, zoo
from smiless.protoutil import set_seconds
from smiless.services.gateway.apps import compile_app
from smiless.v1 import common_pb2, gateway_pb2, optimizer_pb2


def chain(name: str, stages: int = 3) -> appspec.AppSpec:
    names = [f"f{i}" for i in range(stages)]
    return appspec.AppSpec(
        name,
        1.0,
        tuple(appspec.FunctionSpec(n, "tiny-mlp") for n in names),
        tuple(itertools.pairwise(names)),
    )


def test_compiled_app_reserves_downstream_time_and_caps_batches() -> None:
    spec = appspec.AppSpec(
        "gw-compiled",
        1.0,
        tuple(
            appspec.FunctionSpec(n, m)
            for n, m in (
                ("a", "nameentityrecognition"),
                ("b", "translation"),
                ("c", "translation"),
                ("d", "textgeneration"),
            )
        ),
        (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")),
    )
    app = gateway_pb2.App(spec=appspec.to_proto(spec), version=3)
    unplanned = compile_app(app, None)
    assert not unplanned.spec.dag.is_chain and not unplanned.planned
    assert unplanned.batch == dict.fromkeys("abcd", 1) and unplanned.reserve == dict.fromkeys("abcd", 0.0)
    plan = optimizer_pb2.AppPlan(app="gw-compiled")
    for f, latency, batch in (("a", 0.1, 1), ("b", 0.2, 8), ("c", 0.05, 1000), ("d", 0.3, 0)):
        set_seconds(plan.functions.add(function=f, batch_size=batch).latency, latency)
    entry = compile_app(app, plan)
    order = entry.spec.dag.functions
    assert entry.planned and entry.version == 3 and order[0] == "a" and order[-1] == "d"
    capped = zoo.MODELS["translation"].max_batch
    assert entry.batch == {"a": 1, "b": 8, "c": capped, "d": 1}, "capped by max_batch, at least 1"
    assert entry.reserve["d"] == 0.0
    assert entry.reserve["b"] == pytest.approx(0.3) and entry.reserve["c"] == pytest.approx(0.3)
    assert entry.reserve["a"] == pytest.approx(0.5), "the longest path after a: b then d"
    assert entry.ahead["a"] == list(order[:2]) and entry.ahead["d"] == ["d"], "start window 2"
    # a plan that carries each stage's downstream latency is read, not re-timed (this one
    # disagrees with its latencies on purpose); one missing it anywhere is re-timed
    for fp, downstream in zip(plan.functions, (0.7, 0.4, 0.2, 0.0), strict=True):
        set_seconds(fp.downstream, downstream)
    carried = compile_app(app, plan)
    assert carried.reserve == pytest.approx({"a": 0.7, "b": 0.4, "c": 0.2, "d": 0.0})
    plan.functions[1].ClearField("downstream")
    assert compile_app(app, plan).reserve == pytest.approx(entry.reserve)
    assert compile_app(gateway_pb2.App(spec=appspec.to_proto(chain("gw-c"))), None).spec.dag.is_chain


def test_input_fast_check_accepts_only_what_the_full_check_accepts() -> None:
    """The data path skips decoding an input whose dtype, shape and size match a fixed-shape
    entry; every such input must also pass the full check, and a variable-length entry has
    no fast path."""
    fixed = variable = 0
    for name, spec in zoo.MODELS.items():
        one = appspec.AppSpec(f"gw-fast-{name}", 1.0, (appspec.FunctionSpec("f", name),), ())
        fits = compile_app(gateway_pb2.App(spec=appspec.to_proto(one)), None).input_fits
        x = spec.example_input(seed=1)
        if spec.input.variable:
            variable += 1
            assert fits is None
            continue
        fixed += 1
        assert fits is not None
        t = tensors.to_proto(x)
        assert (t.dtype, tuple(t.shape), len(t.data)) == fits
        assert spec.input.check(tensors.from_proto(t)) is None
        for bad in (
            tensors.to_proto(x.astype(np.int32 if x.dtype != np.int32 else np.float32)),
            tensors.to_proto(x.reshape(-1)[:-1]),
            common_pb2.Tensor(dtype=t.dtype, shape=t.shape, data=t.data[:-1]),
        ):
            assert (bad.dtype, tuple(bad.shape), len(bad.data)) != fits, name
    assert fixed and variable, "the zoo has both kinds"
