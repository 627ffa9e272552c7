"""The sender (thin async adapter): fires every send at its scheduled time on the event loop
whatever the responses do (open loop: a slow system does not slow the load down), and
records how late each send actually went out. A replay whose sends slip is a replay of a
different trace, so the report says so instead of hiding it. Beside it, the gateway calls
a replay makes (example inputs, the cost report, the windowed status)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import grpc

from smiless import appspec, tensors, zoo
from smiless.protoutil import get_seconds, set_seconds
from smiless.replay.report import NOT_SENT, OK, Outcome, Result, Run
from smiless.replay.schedule import Send
from smiless.v1 import gateway_pb2, gateway_pb2_grpc

#: The call deadline exceeds the invocation's timeout by this, so the gateway answers first.
CLIENT_GRACE_S = 5.0


Invoker = Callable[[Send], Awaitable[Result]]


async def run_schedule(
    schedule: Sequence[Send],
    invoke: Invoker,
    *,
    stop: asyncio.Event | None = None,
    grace_s: float = 5.0,
    on_sent: Callable[[Send], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> Run:
    """Send every invocation at its time, open loop; when `stop` is set, send no more, give
    the calls in flight `grace_s` to answer, then cancel them (they count as CANCELLED).

    The send time is taken when the call's task starts running, so event-loop lag shows
    up as lateness instead of being hidden.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    wall0 = time.time()
    done: dict[int, Outcome] = {}
    tasks: list[asyncio.Task[None]] = []

    async def one(s: Send) -> None:
        sent = loop.time() - t0
        if on_sent is not None:
            on_sent(s)
        try:
            r = await invoke(s)
        except asyncio.CancelledError:
            done[s.seq] = Outcome(s, grpc.StatusCode.CANCELLED.name, sent, loop.time() - t0)
            raise
        except Exception as exc:  # an adapter bug must not lose the invocation
            r = Result(f"CLIENT_ERROR:{type(exc).__name__}")
        o = Outcome(s, r.status, sent, loop.time() - t0, r.latency_s, r.sla_met, r.cold)
        done[s.seq] = o
        if on_done is not None:
            on_done(o)

    stop_wait = asyncio.ensure_future(stop.wait())
    stopped: list[float] = []
    stop_wait.add_done_callback(lambda f: None if f.cancelled() else stopped.append(loop.time() - t0))
    try:
        for s in schedule:
            delay = t0 + s.at - loop.time()
            if delay > 0:
                await asyncio.wait({stop_wait}, timeout=delay)
            if stop.is_set():
                break
            tasks.append(asyncio.create_task(one(s)))
        pending = {t for t in tasks if not t.done()}
        if pending:
            # Not interrupted: wait for every answer (each call has its own deadline) unless a
            # stop comes; interrupted: give the calls in flight grace_s.
            while not stop.is_set() and (pending := {t for t in tasks if not t.done()}):
                await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            pending = {t for t in tasks if not t.done()}
            if pending:
                await asyncio.wait(pending, timeout=grace_s)
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stop_wait.cancel()
        for t in tasks:
            t.cancel()
    outcomes = [done.get(s.seq) or Outcome(s, NOT_SENT) for s in schedule]
    last = max((o.done_at for o in outcomes if o.done_at is not None), default=0.0)
    return Run(outcomes, wall0, last, stop.is_set(), stopped[0] if stopped else None)


class GatewayInvoker:
    """Invokes apps through the gateway with each app's example input (made once)."""

    def __init__(
        self, channel: grpc.aio.Channel, requests: dict[str, gateway_pb2.InvokeRequest], timeout_s: float
    ) -> None:
        self.stub = gateway_pb2_grpc.GatewayStub(channel)
        self.requests = requests
        self.timeout_s = timeout_s
        self.run_id = uuid.uuid4().hex[:8]

    async def __call__(self, s: Send) -> Result:
        req = gateway_pb2.InvokeRequest()
        req.CopyFrom(self.requests[s.app])
        req.request_id = f"replay-{self.run_id}-{s.seq}"
        # The gateway enforces timeout_s itself (and records the failure); the call's own
        # deadline is later so that the gateway, not the client, decides a slow invocation.
        set_seconds(req.timeout, self.timeout_s)
        try:
            resp = await self.stub.Invoke(req, timeout=self.timeout_s + CLIENT_GRACE_S)
        except grpc.aio.AioRpcError as exc:
            return Result(exc.code().name)
        return Result(OK, get_seconds(resp.latency), resp.sla_met, resp.cold)


async def example_requests(
    stub: gateway_pb2_grpc.GatewayStub, apps: Sequence[str], seed: int = 0
) -> dict[str, gateway_pb2.InvokeRequest]:
    """One InvokeRequest per app with its entry model's example input."""
    out: dict[str, gateway_pb2.InvokeRequest] = {}
    for name in apps:
        got = await stub.GetApp(gateway_pb2.GetAppRequest(name=name), timeout=10)
        spec = appspec.from_proto(got.app.spec)
        x = zoo.MODELS[spec.model_of(spec.entry)].example_input(seed)
        out[name] = gateway_pb2.InvokeRequest(app=name, input=tensors.to_proto(x))
    return out


async def cost_report(
    stub: gateway_pb2_grpc.GatewayStub, start: float, end: float, step_s: float | None = None
) -> gateway_pb2.GetCostReportResponse:
    """The gateway's cost report for every app over [start, end] (epoch seconds), with its
    series in buckets of step_s (the gateway's default when None)."""
    req = gateway_pb2.GetCostReportRequest()
    set_seconds(req.start, start)
    set_seconds(req.end, end)
    if step_s is not None:
        set_seconds(req.step, step_s)
    resp: gateway_pb2.GetCostReportResponse = await stub.GetCostReport(req, timeout=30)
    return resp


async def window_status(
    stub: gateway_pb2_grpc.GatewayStub, app: str, window_s: float
) -> gateway_pb2.GetStatusResponse:
    """GetStatus for one app with one window ending now (p50/p99 over the replay)."""
    req = gateway_pb2.GetStatusRequest(app=app)
    set_seconds(req.windows.add(), window_s)
    resp: gateway_pb2.GetStatusResponse = await stub.GetStatus(req, timeout=30)
    return resp
