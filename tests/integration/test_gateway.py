"""The gateway's data path against the real stack: real Redis, real gRPC, real worker
processes (the process backend). Faults are provoked for real: workers are SIGKILLed,
Redis and the optimizer are stopped.

Where a test needs a second instance of a function it starts a real worker itself and
registers it with `Store.put_instance`, which is what the optimizer's controller does when
it scales out; the gateway learns about it only through the registry's notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from smiless import appspec, tensors, zoo
from smiless.backends.process import ProcessBackend
from smiless.bench.gateway import worker_pids
from smiless.catalogue import load_catalogue
from smiless.cli.stack import LocalStack, free_port, start_redis
from smiless.config import SERVICE_NAMES
from smiless.protoutil import set_seconds
from smiless.store import InvocationRecord, Store, StoreError
from smiless.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, optimizer_pb2, worker_pb2, worker_pb2_grpc

MLP = zoo.MODELS["tiny-mlp"]


def chain(name: str, stages: int = 3, model: str = "tiny-mlp", sla_s: float = 1.0) -> appspec.AppSpec:
    names = [f"f{i}" for i in range(stages)]
    return appspec.AppSpec(
        name,
        sla_s,
        tuple(appspec.FunctionSpec(n, model) for n in names),
        tuple(itertools.pairwise(names)),
    )


def mlp_input(seed: int = 0) -> common_pb2.Tensor:
    return tensors.to_proto(MLP.example_input(seed=seed))


@dataclass
class Outcome:
    code: grpc.StatusCode
    message: str
    response: gateway_pb2.InvokeResponse | None
    seconds: float


async def invoke(
    gw: gateway_pb2_grpc.GatewayStub, app: str, x: common_pb2.Tensor, timeout: float = 30.0
) -> Outcome:
    t0 = time.monotonic()
    try:
        resp = await gw.Invoke(gateway_pb2.InvokeRequest(app=app, input=x), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return Outcome(exc.code(), exc.details() or "", None, time.monotonic() - t0)
    return Outcome(grpc.StatusCode.OK, "", resp, time.monotonic() - t0)


async def closed_loop(
    gw: gateway_pb2_grpc.GatewayStub,
    app: str,
    clients: int,
    duration_s: float,
    during: Callable[[], Awaitable[None]] | None = None,
    timeout: float = 30.0,
) -> tuple[int, list[Outcome]]:
    """(invocations sent, outcomes): every client sends, waits for the answer, sends again."""
    sent = 0
    outcomes: list[Outcome] = []
    stop_at = time.monotonic() + duration_s

    async def client(k: int) -> None:
        nonlocal sent
        i = 0
        while time.monotonic() < stop_at:
            sent += 1
            outcomes.append(await invoke(gw, app, mlp_input(k * 10_000 + i), timeout))
            i += 1

    jobs: list[Awaitable[None]] = [client(k) for k in range(clients)]
    if during is not None:
        jobs.append(during())
    # Nothing may hang: the whole run ends within the call timeout past its duration.
    await asyncio.wait_for(asyncio.gather(*jobs), duration_s + timeout + 10)
    return sent, outcomes


@pytest.fixture(scope="module")
def gw_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of this module's own: the tests stop its Redis and kill its optimizer (last),
    and its controller is off, so the only instances are those the data path asks for and
    the plans those the tests store (another module's stored profile cannot re-plan them)."""
    s = LocalStack(
        tmp_path_factory.mktemp("gateway"),
        ports={n: free_port() for n in SERVICE_NAMES},
        extra_env={
            "SMILESS_RECORD_BUFFER": "20",
            "SMILESS_REDIS_TIMEOUT_S": "0.5",
            "SMILESS_CONTROLLER": "false",
        },
    )
    s.start()
    yield s
    s.stop()


@pytest.fixture
async def gw(gw_stack: LocalStack) -> AsyncIterator[gateway_pb2_grpc.GatewayStub]:
    async with grpc.aio.insecure_channel(gw_stack.addresses["gateway"]) as ch:
        yield gateway_pb2_grpc.GatewayStub(ch)


@pytest.fixture
async def store(gw_stack: LocalStack) -> AsyncIterator[Store]:
    s = Store(str(gw_stack.redis_url))
    yield s
    await s.close()


async def register(gw: gateway_pb2_grpc.GatewayStub, spec: appspec.AppSpec) -> None:
    await gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True), timeout=10)


async def app_instances(store: Store, app: str) -> list[common_pb2.Instance]:
    return [i for i in await store.list_instances() if i.app == app]


class ExtraWorker:
    """A second real instance of a function, registered the way the controller does it."""

    def __init__(self, store: Store, app: str, function: str, batch: int = 0) -> None:
        self.store = store
        self.backend = ProcessBackend("127.0.0.1", 120, 5)
        self.inst = common_pb2.Instance(
            id=f"{app}-{function}-extra-{os.getpid()}-{free_port()}",
            app=app,
            function=function,
            model="tiny-mlp",
            config="cpu-1",
            backend="process",
            state=common_pb2.INSTANCE_STATE_STARTING,
            price_per_hour=0.034,
            batch=batch,
        )

    async def start(self) -> common_pb2.Instance:
        set_seconds(self.inst.started_at, time.time())
        started = await self.backend.start(self.inst.id, "tiny-mlp", load_catalogue(None)["cpu-1"])
        self.inst.address = started.address
        self.inst.state = common_pb2.INSTANCE_STATE_READY
        set_seconds(self.inst.ready_at, time.time())
        await self.store.put_instance(self.inst)
        return self.inst

    async def stop(self) -> None:
        self.inst.state = common_pb2.INSTANCE_STATE_STOPPED
        set_seconds(self.inst.stopped_at, time.time())
        await self.store.put_instance(self.inst)
        await self.backend.stop(self.inst.id)
        await self.backend.close()


def kill_worker(address: str) -> None:
    pids = worker_pids({int(address.rsplit(":", 1)[1])})
    assert pids, f"no worker process listens on {address}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


# --- bad input --------------------------------------------------------------------------
async def test_unknown_app_and_bad_input_touch_no_instance(
    gw: gateway_pb2_grpc.GatewayStub, store: Store
) -> None:
    await register(gw, chain("gw-bad-input"))
    assert (await invoke(gw, "gw-no-such-app", mlp_input())).code == grpc.StatusCode.NOT_FOUND
    cases = {
        "wrong shape": tensors.to_proto(np.zeros((3, 4), dtype=np.float32)),
        "wrong dtype": tensors.to_proto(np.zeros(16, dtype=np.int64)),
        "short data": common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_FLOAT32, shape=[16], data=b"\0" * 8),
    }
    for case, x in cases.items():
        out = await invoke(gw, "gw-bad-input", x)
        assert out.code == grpc.StatusCode.INVALID_ARGUMENT, case
        assert out.message.startswith("input:"), out.message
    req = gateway_pb2.InvokeRequest(app="gw-bad-input", input=mlp_input())
    req.timeout.FromNanoseconds(-1_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.Invoke(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("timeout:")
    assert await app_instances(store, "gw-bad-input") == [], "no instance was started for bad input"


# --- deadlines --------------------------------------------------------------------------
async def test_deadline_exceeded_names_the_stage(gw: gateway_pb2_grpc.GatewayStub) -> None:
    spec = appspec.AppSpec("gw-deadline", 5.0, (appspec.FunctionSpec("gen", "textgeneration"),))
    await register(gw, spec)
    tokens = tensors.to_proto(zoo.MODELS["textgeneration"].example_input(seed=3, length=100))
    # Cold: the instance needs seconds to start; a 0.3 s limit runs out waiting for it.
    req = gateway_pb2.InvokeRequest(app="gw-deadline", input=tokens)
    set_seconds(req.timeout, 0.3)
    t0 = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.Invoke(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (info.value.details() or "").startswith("stage gen:"), info.value.details()
    assert time.monotonic() - t0 < 2.0, "the gateway answers at the deadline, not later"
    # Warm now (the instance kept starting); 16 decoding passes take longer than 2 ms.
    await gw.Invoke(gateway_pb2.InvokeRequest(app="gw-deadline", input=tokens), timeout=120)
    set_seconds(req.timeout, 0.002)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.Invoke(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (info.value.details() or "").startswith("stage gen:"), info.value.details()
    # The call's own gRPC deadline counts the same way, and the gateway's answer names the stage.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.Invoke(gateway_pb2.InvokeRequest(app="gw-deadline", input=tokens), timeout=0.005)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


# --- routing over several instances, registry notifications, a worker killed -----------
async def test_scale_out_is_used_and_a_killed_worker_loses_nothing(
    gw: gateway_pb2_grpc.GatewayStub, store: Store
) -> None:
    app = "gw-scaled"
    await register(gw, chain(app))
    first = await invoke(gw, app, mlp_input(), timeout=180)
    assert first.response is not None, first.message
    own = {s.function: s.instance_id for s in first.response.stages}
    extra = ExtraWorker(store, app, "f1")
    added = await extra.start()
    try:
        # The gateway hears of the new instance through the registry's notifications.
        sent, outcomes = await closed_loop(gw, app, clients=8, duration_s=2.0)
        assert len(outcomes) == sent and all(o.code == grpc.StatusCode.OK for o in outcomes)
        used = {
            s.instance_id for o in outcomes if o.response for s in o.response.stages if s.function == "f1"
        }
        assert used == {own["f1"], added.id}, "both instances of f1 serve (least outstanding)"

        # Kill the optimizer's f1 worker mid-load: every invocation ends, with a result or a status.
        by_id = {i.id: i for i in await app_instances(store, app)}
        victim = by_id[own["f1"]]

        async def kill_later() -> None:
            await asyncio.sleep(1.0)
            kill_worker(victim.address)

        sent, outcomes = await closed_loop(gw, app, clients=8, duration_s=3.0, during=kill_later)
        assert len(outcomes) == sent, "every invocation is accounted for"
        bad = {(o.code.name, o.message) for o in outcomes} - {("OK", "")}
        assert all(code == "UNAVAILABLE" for code, _ in bad), bad
        ok = [o for o in outcomes if o.code == grpc.StatusCode.OK]
        print(f"worker killed mid-load: {sent} sent, {len(ok)} succeeded, {sent - len(ok)} UNAVAILABLE")
        assert len(ok) >= 0.9 * sent, f"{sent - len(ok)} of {sent} failed: the retry on another instance"
        late = [o for o in ok if o.response and any(s.instance_id == added.id for s in o.response.stages)]
        assert late, "the surviving instance kept serving"
        assert max(o.seconds for o in outcomes) < 10, "nothing hung"
        # The optimizer noticed the death; the registry no longer lists the victim.
        deadline = time.monotonic() + 10
        while victim.id in {i.id for i in await app_instances(store, app)}:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    finally:
        await extra.stop()
    # Stopped: the gateway stops routing to it (notification), a new instance serves f1.
    await asyncio.sleep(0.3)
    after = await invoke(gw, app, mlp_input(), timeout=180)
    assert after.response is not None, after.message
    f1 = next(s for s in after.response.stages if s.function == "f1")
    assert f1.instance_id not in (added.id, victim.id)


# --- batching ---------------------------------------------------------------------------
async def test_planned_batches_split_back_per_request(gw: gateway_pb2_grpc.GatewayStub, store: Store) -> None:
    app = "gw-batched"
    await register(gw, chain(app, stages=2, sla_s=2.0))
    warm = await invoke(gw, app, mlp_input(), timeout=180)
    assert warm.response is not None, warm.message
    plan = optimizer_pb2.AppPlan(app=app, feasible=True)
    for f in ("f0", "f1"):
        fp = plan.functions.add(function=f, config="cpu-1", batch_size=4, instances=1)
        set_seconds(fp.latency, 0.005)
    await store.put_plan(plan)  # what the optimizer stores; the gateway reloads plans each second
    await asyncio.sleep(1.5)
    xs = [MLP.example_input(seed=100 + i) for i in range(16)]
    outs = await asyncio.gather(*(invoke(gw, app, tensors.to_proto(x)) for x in xs))
    assert all(o.response is not None for o in outs), [o.message for o in outs]
    sizes = [s.batch_size for o in outs if o.response for s in o.response.stages]
    assert max(sizes) > 1 and max(sizes) <= 4, sizes
    # Each request got its own result: the chain computed directly on the workers, one by one.
    by_id = {i.id: i for i in await app_instances(store, app)}
    stages = {s.function: by_id[s.instance_id].address for s in warm.response.stages}
    async with (
        grpc.aio.insecure_channel(stages["f0"]) as c0,
        grpc.aio.insecure_channel(stages["f1"]) as c1,
    ):
        w0, w1 = worker_pb2_grpc.WorkerStub(c0), worker_pb2_grpc.WorkerStub(c1)
        for x, o in zip(xs, outs, strict=True):
            assert o.response is not None
            mid = (await w0.Infer(worker_pb2.InferRequest(inputs=[tensors.to_proto(x)]), timeout=10)).outputs[
                0
            ]
            want = tensors.from_proto(
                (await w1.Infer(worker_pb2.InferRequest(inputs=[mid]), timeout=10)).outputs[0]
            )
            got = tensors.from_proto(o.response.outputs["f1"])
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    await store.put_plan(optimizer_pb2.AppPlan(app=app))  # back to unbatched


async def test_each_instance_gets_batches_of_at_most_its_own_batch(
    gw: gateway_pb2_grpc.GatewayStub, store: Store
) -> None:
    """The plan serves one at a time, but a second instance was started for batches of 4
    (as the controller starts a burst's instances): it alone is handed batches, up to 4."""
    app = "gw-instance-batch"
    await register(gw, chain(app, stages=1, sla_s=2.0))
    plan = optimizer_pb2.AppPlan(app=app, feasible=True)
    fp = plan.functions.add(function="f0", config="cpu-1", batch_size=1, instances=1)
    set_seconds(fp.latency, 0.005)
    await store.put_plan(plan)
    warm = await invoke(gw, app, mlp_input(), timeout=180)  # the optimizer starts one on demand
    assert warm.response is not None, warm.message
    first = warm.response.stages[0].instance_id
    started = {i.id: i for i in await app_instances(store, app)}[first]
    assert started.batch == 1, "an on-demand start carries its plan's batch"
    extra = ExtraWorker(store, app, "f0", batch=4)
    await extra.start()
    try:
        await asyncio.sleep(1.0)  # the gateway's registry follows Redis
        sizes: dict[str, list[int]] = {}
        for _ in range(3):
            outs = await asyncio.gather(*(invoke(gw, app, mlp_input(seed=i)) for i in range(24)))
            assert all(o.response is not None for o in outs), [o.message for o in outs]
            for o in outs:
                assert o.response is not None
                st = o.response.stages[0]
                sizes.setdefault(st.instance_id, []).append(st.batch_size)
        assert set(sizes) <= {first, extra.inst.id}, sizes
        assert max(sizes.get(first, [1])) == 1, sizes
        assert 1 < max(sizes[extra.inst.id]) <= 4, sizes
    finally:
        await extra.stop()


# --- streaming --------------------------------------------------------------------------
async def test_invoke_stream_answers_each_request(gw: gateway_pb2_grpc.GatewayStub) -> None:
    app = "gw-stream"
    await register(gw, chain(app))
    assert (await invoke(gw, app, mlp_input(), timeout=180)).code == grpc.StatusCode.OK
    bad = tensors.to_proto(np.zeros(3, dtype=np.float32))
    requests = []
    for i in range(40):
        if i == 7:
            inv = gateway_pb2.InvokeRequest(app=app, input=bad, request_id="bad-input")
        elif i == 11:
            inv = gateway_pb2.InvokeRequest(app="gw-nope", input=mlp_input(), request_id="bad-app")
        else:
            inv = gateway_pb2.InvokeRequest(app=app, input=mlp_input(i))
        requests.append(gateway_pb2.InvokeStreamRequest(invocation=inv))
    answers = [a async for a in gw.InvokeStream(iter(requests), timeout=60)]
    assert sorted(a.index for a in answers) == list(range(40))
    by_index = {a.index: a for a in answers}
    assert by_index[7].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_index[7].request_id == "bad-input" and by_index[7].message.startswith("input:")
    assert by_index[11].code == grpc.StatusCode.NOT_FOUND.value[0]
    good = [a for a in answers if a.index not in (7, 11)]
    assert all(a.code == 0 and set(a.response.outputs) == {"f2"} for a in good)
    assert len({a.request_id for a in good}) == 38, "every invocation got its own id"


# --- Redis down, optimizer down (these two run last: they break the stack) ----------
async def test_redis_down_keeps_serving_and_bounds_recording(gw_stack: LocalStack) -> None:
    app = "gw-redis-down"
    redis_port = int(str(gw_stack.redis_url).rsplit(":", 1)[1].split("/")[0])
    async with grpc.aio.insecure_channel(gw_stack.addresses["gateway"]) as ch:
        gw = gateway_pb2_grpc.GatewayStub(ch)
        await register(gw, chain(app))
        assert (await invoke(gw, app, mlp_input(), timeout=180)).code == grpc.StatusCode.OK
        await asyncio.sleep(0.6)  # the recorder flushed what it had
        gw_stack.procs["redis"].terminate()
        gw_stack.procs["redis"].wait(10)
        outage_start = time.time()
        try:
            n = 40
            outs = [await invoke(gw, app, mlp_input(i), timeout=10) for i in range(n)]
            assert [o.code for o in outs] == [grpc.StatusCode.OK] * n, [o.message for o in outs if o.message]
            assert all(not o.response.cold for o in outs if o.response)
            status = await gw.GetStatus(gateway_pb2.GetStatusRequest(), timeout=10)
            assert status.degraded
            assert any(r.startswith("redis:") for r in status.degraded_reasons), status.degraded_reasons
            assert status.records_dropped >= n - 20, "beyond the bound, records are dropped and counted"
            assert 0 < status.records_buffered <= 3 * 20
            assert app in {a.name for a in status.apps}, "apps come from the cache"
        finally:
            gw_stack.procs["redis"], _ = start_redis(gw_stack.data_dir / "redis", redis_port)
        outage_end = time.time()
        # Redis is back: the buffered records (the last 20 invocations) are written.
        store = Store(str(gw_stack.redis_url))
        try:
            deadline = time.monotonic() + 15
            during: list[InvocationRecord] = []
            while len(during) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                with contextlib.suppress(StoreError):  # e.g. still loading its append-only file
                    during = await store.invocations(app, outage_start, outage_end)
            assert len(during) == 20, "the bound's worth of outage records survives"
        finally:
            await store.close()
        deadline = time.monotonic() + 15
        while (await gw.GetStatus(gateway_pb2.GetStatusRequest(), timeout=10)).records_buffered:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)


async def test_optimizer_down_warm_paths_continue_cold_paths_fail_fast(gw_stack: LocalStack) -> None:
    async with grpc.aio.insecure_channel(gw_stack.addresses["gateway"]) as ch:
        gw = gateway_pb2_grpc.GatewayStub(ch)
        await register(gw, chain("gw-opt-warm"))
        await register(gw, chain("gw-opt-cold", stages=1))
        first = await invoke(gw, "gw-opt-warm", mlp_input(), timeout=180)
        assert first.response is not None, first.message
        store = Store(str(gw_stack.redis_url))
        try:
            addresses = [i.address for i in await store.list_instances()]
        finally:
            await store.close()
        optimizer = gw_stack.procs["optimizer"]
        optimizer.kill()  # its workers (own sessions) live on
        optimizer.wait(10)
        try:
            outs = [await invoke(gw, "gw-opt-warm", mlp_input(i), timeout=10) for i in range(20)]
            assert [o.code for o in outs] == [grpc.StatusCode.OK] * 20, [o.message for o in outs]
            t0 = time.monotonic()
            cold = await invoke(gw, "gw-opt-cold", mlp_input(), timeout=30)
            assert cold.code == grpc.StatusCode.UNAVAILABLE, cold
            assert cold.message.startswith("stage f0:") and "optimizer" in cold.message
            assert time.monotonic() - t0 < 2.0, "fails fast"
        finally:
            for a in addresses:  # the orphaned workers of the killed optimizer
                for pid in worker_pids({int(a.rsplit(":", 1)[1])}):
                    os.kill(pid, signal.SIGKILL)


def test_gateway_log_is_clean(gw_stack: LocalStack) -> None:
    """No traceback in the gateway's log: faults are answered, never crashes."""
    text = Path(gw_stack.log_path("gateway")).read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]


# --- the compiled app (pure: no stack) --------------------------------------------------
def test_compiled_app_reserves_downstream_time_and_caps_batches() -> None:
    from smiless.services.gateway.apps import compile_app

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
    assert not unplanned.chain and not unplanned.planned
    assert unplanned.batch == dict.fromkeys("abcd", 1) and unplanned.reserve == dict.fromkeys("abcd", 0.0)
    plan = optimizer_pb2.AppPlan(app="gw-compiled")
    for f, latency, batch in (("a", 0.1, 1), ("b", 0.2, 8), ("c", 0.05, 1000), ("d", 0.3, 0)):
        set_seconds(plan.functions.add(function=f, batch_size=batch).latency, latency)
    entry = compile_app(app, plan)
    assert entry.planned and entry.version == 3 and entry.order[0] == "a" and entry.order[-1] == "d"
    capped = zoo.MODELS["translation"].max_batch
    assert entry.batch == {"a": 1, "b": 8, "c": capped, "d": 1}, "capped by max_batch, at least 1"
    assert entry.reserve["d"] == 0.0
    assert entry.reserve["b"] == pytest.approx(0.3) and entry.reserve["c"] == pytest.approx(0.3)
    assert entry.reserve["a"] == pytest.approx(0.5), "the longest path after a: b then d"
    assert entry.ahead[entry.order[0]] == entry.order[:2] and entry.ahead["d"] == ["d"], "start window 2"
    # a plan that carries each stage's downstream latency is read, not re-timed (this one
    # disagrees with its latencies on purpose); one missing it anywhere is re-timed
    for fp, downstream in zip(plan.functions, (0.7, 0.4, 0.2, 0.0), strict=True):
        set_seconds(fp.downstream, downstream)
    carried = compile_app(app, plan)
    assert carried.reserve == pytest.approx({"a": 0.7, "b": 0.4, "c": 0.2, "d": 0.0})
    plan.functions[1].ClearField("downstream")
    assert compile_app(app, plan).reserve == pytest.approx(entry.reserve)
    assert compile_app(gateway_pb2.App(spec=appspec.to_proto(chain("gw-c"))), None).chain


def test_input_fast_check_accepts_only_what_the_full_check_accepts() -> None:
    """The data path skips decoding an input whose dtype, shape and size match a fixed-shape
    entry; every such input must also pass the full check, and a variable-length entry has
    no fast path."""
    from smiless.services.gateway.apps import compile_app

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
