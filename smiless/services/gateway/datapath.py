"""The gateway's data path: one invocation from request to response.

Order of work, and why:
1. The app comes from the in-memory cache (apps.py); the input is checked against the
   entry model's contract before any instance is touched (INVALID_ARGUMENT).
2. Deadlines. The invocation's deadline is the smallest of the call's gRPC deadline (less
   a small margin, so the gateway's own answer naming the stage arrives first), the
   request's `timeout` and `invoke_timeout_s`. Each stage's deadline is the invocation's
   deadline less the planned latency of the longest path after the stage (capped at half of
   what is left, so a pessimistic plan cannot starve a stage); it is the timeout of the
   worker call, and running out answers DEADLINE_EXCEEDED naming the stage. The SLA is not a
   deadline: an invocation that misses it still returns its outputs and counts as a
   violation. The SLA budget bounds how long a stage may wait for its batch to fill.
3. Each stage goes to a READY instance (router.py). When some function of the app has no
   live instance, each stage asks the optimizer for itself and the next ones in execution
   order (one per core), so a cold DAG's starts overlap rather than run stage after stage,
   without starting every worker at once on a small host. A call that fails for
   instance reasons (UNAVAILABLE, CANCELLED, UNKNOWN) sets that instance aside and is
   retried once on another one before the stage fails with UNAVAILABLE.
4. Recording (arrival, warm stage latency, result) only appends to the recorder's buffers.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Awaitable

import grpc

from smiless import logs, tensors
from smiless.config import Settings
from smiless.protoutil import get_seconds, set_seconds
from smiless.server import RpcError
from smiless.services.gateway.apps import AppCache, AppEntry
from smiless.services.gateway.batcher import Batcher
from smiless.services.gateway.executor import StageFailed, StageResult, execute
from smiless.services.gateway.recorder import Recorder
from smiless.services.gateway.registry import InstanceRegistry
from smiless.services.gateway.router import Router
from smiless.services.gateway.streams import WorkerCallError
from smiless.store import InvocationRecord, Store
from smiless.v1 import common_pb2, gateway_pb2

log = logging.getLogger("smiless.gateway")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN})


_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count()


def new_request_id() -> str:
    """A request id unique across gateway processes and restarts (a random prefix drawn at
    start, then a counter): cheaper than a uuid4 per invocation."""
    return f"{_ID_PREFIX}{next(_ids):x}"


class Sent:
    """What one worker call (one request or one batch) did."""

    __slots__ = ("cold", "config", "inference", "instance_id", "queued", "sent")

    def __init__(
        self, instance_id: str, config: str, queued: float, sent: float, inference: float, cold: bool
    ) -> None:
        self.instance_id = instance_id
        self.config = config
        self.queued = queued  # monotonic time the call started looking for an instance
        self.sent = sent  # monotonic time the Infer call went out
        self.inference = inference
        self.cold = cold


class DataPath:
    def __init__(self, settings: Settings, store: Store, recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder
        # Cold starts overlap up to one per core (see AppEntry.ahead).
        self.apps = AppCache(store, settings.app_refresh_s, max(2, os.cpu_count() or 1))
        self.registry = InstanceRegistry(store, on_removed=self._removed)
        self.router = Router(settings, self.registry)
        self.batchers: dict[tuple[str, str], Batcher[Sent]] = {}

    def _removed(self, inst: common_pb2.Instance) -> None:
        self.router.instance_removed(inst)

    async def start(self) -> None:
        self.apps.start()
        self.registry.start()

    async def stop(self) -> None:
        for b in self.batchers.values():
            await b.close()
        await self.registry.stop()
        await self.apps.stop()
        await self.router.close()

    def forget_app(self, name: str) -> None:
        self.apps.forget(name)
        for key in [k for k in self.batchers if k[0] == name]:
            del self.batchers[key]

    # --- one worker call, retried once elsewhere ----------------------------------------
    async def call(
        self,
        app: str,
        function: str,
        model: str,
        inputs: list[common_pb2.Tensor],
        deadline: float,
        first: common_pb2.Instance | None = None,
    ) -> tuple[list[common_pb2.Tensor], Sent]:
        """`first`: the instance to try first, on which the caller has already counted the
        inputs in `router.outstanding` (a batch bound to it, see `_batcher`)."""
        queued = time.monotonic()
        exclude: frozenset[str] = frozenset()
        cold = False
        n = len(inputs)
        for attempt in (0, 1):
            held = attempt == 0 and first is not None
            inst = first if held else self.router.pick(app, function, exclude)  # the warm path: no await
            if inst is None:
                inst, waited = await self.router.acquire(app, function, deadline, exclude)
                cold = cold or waited
            iid = inst.id
            if not held:
                self._hold(iid, n)
            sent = time.monotonic()
            if sent >= deadline:
                self._release(iid, n)
                raise RpcError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"stage {function}: ran out of time waiting for an instance",
                )
            try:
                resp = await self.router.worker(inst.address).infer(inputs, deadline - sent)
            except WorkerCallError as exc:
                code = exc.code
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise RpcError(
                        code,
                        f"stage {function}: ran out of time on instance {iid} "
                        f"(it had {(deadline - sent) * 1000:.0f} ms)",
                    ) from exc
                if code not in RETRYABLE:
                    raise RpcError(code, f"stage {function}: instance {iid}: {exc.details}") from exc
                self.registry.suspect(iid)
                if attempt == 0 and time.monotonic() < deadline:
                    logs.event(
                        log,
                        "instance failed; retrying on another",
                        logging.WARNING,
                        stage=function,
                        instance=iid,
                        code=code.name,
                        error=exc.details,
                    )
                    exclude = frozenset({iid})
                    continue
                raise RpcError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"stage {function}: instance {iid} failed ({code.name}: {exc.details}) after a retry",
                ) from exc
            finally:
                self._release(iid, n)
            done = time.monotonic()
            if not cold:
                self.recorder.stage(model, inst.config, n, done - sent, done)
            return list(resp.outputs), Sent(
                iid, inst.config, queued, sent, resp.inference_time.ToNanoseconds() / 1e9, cold
            )
        raise AssertionError("unreachable")

    def _hold(self, instance_id: str, n: int) -> None:
        """Count `n` requests on the instance: `router.pick` prefers the least loaded."""
        outstanding = self.router.outstanding
        outstanding[instance_id] = outstanding.get(instance_id, 0) + n

    def _release(self, instance_id: str, n: int) -> None:
        outstanding = self.router.outstanding
        left = outstanding.get(instance_id, 0) - n
        if left > 0:
            outstanding[instance_id] = left
        else:
            outstanding.pop(instance_id, None)

    def _batcher(self, entry: AppEntry, function: str) -> Batcher[Sent]:
        key = (entry.name, function)
        b = self.batchers.get(key)
        if b is None:
            model = entry.models[function]
            app = entry.name

            def dispatch(
                inputs: list[common_pb2.Tensor], deadline: float, inst: common_pb2.Instance | None
            ) -> Awaitable[tuple[list[common_pb2.Tensor], Sent]]:
                if inst is not None:  # counted now: the flush's next batch goes elsewhere
                    self._hold(inst.id, len(inputs))
                return self.call(app, function, model, inputs, deadline, first=inst)

            def pick() -> common_pb2.Instance | None:
                return self.router.pick(app, function)

            b = Batcher(function, entry.batch[function], dispatch, pick, entry.max_batch[function])
            self.batchers[key] = b
        b.size = entry.batch[function]
        return b

    def _batched(self, entry: AppEntry, function: str) -> bool:
        """Whether a stage goes through its batcher: the plan batches it, or a ready instance
        was started to serve more than one at once."""
        if entry.batch[function] > 1:
            return True
        if entry.max_batch[function] <= 1:
            return False
        return any(i.batch > 1 for i in self.registry.ready.get((entry.name, function), ()))

    # --- one invocation ------------------------------------------------------------------
    @staticmethod
    def _check_input(entry: AppEntry, x: common_pb2.Tensor) -> None:
        """Decode and check the input against the entry model (INVALID_ARGUMENT naming why).
        An input whose dtype, shape and size match a fixed-shape entry skips this."""
        try:
            array = tensors.from_proto(x)
        except tensors.TensorError as exc:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"input: {exc}") from exc
        why = entry.entry_model.input.check(array)
        if why:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input: {why} (entry {entry.spec.entry}: {entry.entry_model.name})",
            )

    async def invoke(
        self,
        request: gateway_pb2.InvokeRequest,
        call_remaining: float | None,
        request_id: str = "",
        into: gateway_pb2.InvokeResponse | None = None,
    ) -> gateway_pb2.InvokeResponse:
        """Run one invocation; the response is written into `into` when given (a stream's
        answer: no copy), else into a new message."""
        received = time.monotonic()
        received_wall = time.time()
        entry = self.apps.entries.get(request.app) or await self.apps.get(request.app)
        if not request.HasField("input"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "input: required")
        x = request.input
        fits = entry.input_fits  # (dtype, shape, bytes) of a fixed-shape entry input
        if fits is None or x.dtype != fits[0] or len(x.data) != fits[2] or tuple(x.shape) != fits[1]:
            self._check_input(entry, x)
        budget = self.settings.invoke_timeout_s
        if request.HasField("timeout"):
            asked = get_seconds(request.timeout)
            if asked <= 0:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "timeout: must be positive")
            budget = min(budget, asked)
        if call_remaining is not None:
            budget = min(budget, call_remaining - min(0.01, 0.05 * call_remaining))
        deadline = received + budget
        sla_deadline = received + entry.spec.sla_s
        request_id = request_id or request.request_id or new_request_id()
        app = entry.name
        self.recorder.arrival(app, received_wall)
        ready = self.registry.ready
        cold = any(not ready.get((app, f)) for f in entry.spec.dag.functions)
        max_wait = self.settings.batch_max_wait_s

        async def stage(function: str, inp: common_pb2.Tensor) -> StageResult:
            start = time.monotonic()
            left = deadline - start
            if left <= 0:
                raise RpcError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"stage {function}: ran out of time before it started"
                )
            if cold:
                self.router.prestart(app, entry.ahead[function], deadline)
            reserve = entry.reserve[function]
            stage_deadline = deadline - min(reserve, 0.5 * left) if reserve else deadline
            size = 1
            if self._batched(entry, function):
                wait = min(max_wait, sla_deadline - start - reserve - entry.latency[function])
                out, sent, size = await self._batcher(entry, function).submit(inp, stage_deadline, wait)
            else:
                outs, sent = await self.call(app, function, entry.models[function], [inp], stage_deadline)
                out = outs[0]
            end = time.monotonic()
            return StageResult(
                output=out,
                instance_id=sent.instance_id,
                config=sent.config,
                start=start,
                end=end,
                queueing=sent.sent - start,
                inference=sent.inference,
                cold=sent.cold,
                batch_size=size,
            )

        try:
            results = await execute(entry.spec.dag, request.input, stage)
        except StageFailed as exc:
            self.recorder.invocation(
                app,
                InvocationRecord(
                    received_wall, (time.monotonic() - received) * 1000.0, False, False, request_id
                ),
            )
            if isinstance(exc.cause, RpcError):
                raise exc.cause from exc
            log.error("stage %s failed: %r", exc.function, exc.cause, exc_info=exc.cause)
            raise RpcError(grpc.StatusCode.INTERNAL, str(exc)) from exc
        latency = time.monotonic() - received
        cold = any(r.cold for r in results.values())
        sla_met = latency <= entry.spec.sla_s
        self.recorder.invocation(
            app, InvocationRecord(received_wall, latency * 1000.0, sla_met, cold, request_id)
        )
        resp = gateway_pb2.InvokeResponse() if into is None else into
        resp.request_id, resp.sla_met, resp.cold = request_id, sla_met, cold
        set_seconds(resp.latency, latency)
        outputs = resp.outputs
        for leaf in entry.spec.dag.leaves:
            outputs[leaf].CopyFrom(results[leaf].output)
        stages = resp.stages
        for function in entry.spec.dag.functions:
            r = results[function]
            st = stages.add(
                function=function,
                instance_id=r.instance_id,
                config=r.config,
                cold=r.cold,
                batch_size=r.batch_size,
            )
            set_seconds(st.start_offset, r.start - received)
            set_seconds(st.latency, r.end - r.start)
            set_seconds(st.queueing, r.queueing)
            set_seconds(st.inference, r.inference)
        return resp
