"""The service shell every smiless service runs in.

`run_service()` starts a `grpc.aio` server with the standard health service (SERVING
once ready, NOT_SERVING while draining or while Redis is unreachable) and server
reflection, checks Redis before it accepts calls, watches Redis afterwards, and on
SIGTERM/SIGINT drains: NOT_SERVING first, then in-flight calls get the grace period.

Cross-cutting policy lives here as one server interceptor, not in the handlers: RPC metrics
for every service (smiless/metrics.py) and, on the client-facing gateway, the API/admin
tokens and the request size limit (smiless/security.py); the gateway serves TLS when a
certificate is configured. Each service also serves a Prometheus endpoint.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from redis.exceptions import RedisError

from smiless import logs, metrics, security
from smiless.aio import stop_task
from smiless.appspec import AppSpecError
from smiless.config import Settings
from smiless.store import Store

log = logging.getLogger("smiless.server")


class Service(Protocol):
    """What a smiless service gives the shell."""

    name: str

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        """Register servicers; return their full service names (for health and reflection)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class RpcError(Exception):
    """Raised inside a handler to answer with `code` and `message`."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def rpc(func: F) -> F:
    """Map exceptions of a handler to gRPC statuses so that no bad request kills a service:
    RpcError -> its code, AppSpecError -> INVALID_ARGUMENT, Redis down -> UNAVAILABLE,
    anything else -> INTERNAL (logged with its traceback)."""

    @functools.wraps(func)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await func(self, request, context)
        except RpcError as exc:
            await context.abort(exc.code, exc.message)
        except AppSpecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (RedisError, ConnectionError) as exc:
            logs.event(log, "redis unavailable", logging.WARNING, rpc=func.__name__, error=str(exc))
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            log.exception("unhandled error in %s", func.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    size = settings.max_message_mb * 1024 * 1024
    return [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]


# --- the interceptor --------------------------------------------------------------------------
PUBLIC_SERVICE = "gateway"  # the client-facing API: tokens, size limit and TLS apply to it


class _TooLarge:
    """Stands in for a request whose serialised size is over the limit (never parsed)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


def _code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


class ShellInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Tokens, request size limit and RPC metrics around every handler of one server.

    Wrapped handlers are built once per method and reused, so a call pays for a dict
    lookup, two clock reads and two metric updates (plus the token compare when set)."""

    def __init__(
        self,
        recorder: metrics.RpcRecorder | None,
        tokens: security.TokenPolicy | None = None,
        max_request_bytes: int | None = None,
    ) -> None:
        self.recorder = recorder
        self.tokens = tokens if tokens is not None and tokens.enabled else None
        self.max_request_bytes = max_request_bytes
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        if self.tokens is not None:
            denied = self.tokens.check(method, details.invocation_metadata)
            if denied is not None:
                return self._deny(handler, method, *denied)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _deny(
        self, handler: grpc.RpcMethodHandler, method: str, code: grpc.StatusCode, message: str
    ) -> grpc.RpcMethodHandler:
        recorder = self.recorder

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if recorder is not None:
                recorder.done(method, code, 0.0)
            await context.abort(code, message)

        # The request is not parsed (no deserializer): a refused call costs no decoding.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse, None, handler.response_serializer)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(refuse, None, handler.response_serializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(refuse, None, handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(refuse, None, handler.response_serializer)

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        recorder = self.recorder
        limit = self.max_request_bytes
        deserialize = handler.request_deserializer
        if limit is not None:
            inner_deserialize = deserialize

            def deserialize(raw: bytes) -> Any:
                if len(raw) > limit:
                    return _TooLarge(len(raw))
                return inner_deserialize(raw) if inner_deserialize is not None else raw

        async def check_size(request: Any, context: grpc.aio.ServicerContext) -> None:
            if isinstance(request, _TooLarge):
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request: {request.size} bytes is over the gateway's limit of {limit} bytes "
                    "(SMILESS_MAX_REQUEST_MB)",
                )

        def finish(
            context: grpc.aio.ServicerContext, start: float, exc: BaseException | None
        ) -> grpc.StatusCode:
            code = _code(context, exc)
            if recorder is not None:
                recorder.done(method, code, perf_counter() - start)
            return code

        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            uu = handler.unary_unary
            is_invoke = method == metrics.INVOKE_METHOD

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start, response, error = perf_counter(), None, None
                try:
                    await check_size(request, context)
                    response = await uu(request, context)
                    return response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    code = finish(context, start, error)
                    if is_invoke and recorder is not None:
                        # per-app figures after the answer is on its way, not before
                        asyncio.get_running_loop().call_soon(
                            recorder.invoked, method, request, response, code
                        )

            return grpc.unary_unary_rpc_method_handler(unary_unary, deserialize, serializer)

        tally_stream = method == metrics.INVOKE_STREAM_METHOD and recorder is not None

        async def requests(it: AsyncIterator[Any], context: Any, tally: Any) -> AsyncIterator[Any]:
            async for request in it:
                await check_size(request, context)
                if tally is not None:
                    tally.request(request)
                yield request

        async def responses(result: Any, tally: Any) -> AsyncIterator[Any]:
            if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
                async for message in result:
                    if tally is not None:
                        asyncio.get_running_loop().call_soon(tally.response, message)
                    yield message
            elif inspect.isawaitable(result):
                await result

        if handler.unary_stream is not None:
            us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                start, error = perf_counter(), None
                try:
                    await check_size(request, context)
                    async for message in responses(us(request, context), None):
                        yield message
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, start, error)

            return grpc.unary_stream_rpc_method_handler(unary_stream, deserialize, serializer)

        if handler.stream_unary is not None:
            su = handler.stream_unary

            async def stream_unary(it: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                start, error = perf_counter(), None
                try:
                    return await su(requests(it, context, None), context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, start, error)

            return grpc.stream_unary_rpc_method_handler(stream_unary, deserialize, serializer)

        ss = handler.stream_stream

        async def stream_stream(
            it: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            start, error = perf_counter(), None
            tally = metrics.StreamTally() if tally_stream else None
            try:
                async for message in responses(ss(requests(it, context, tally), context), tally):
                    yield message
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(context, start, error)

        return grpc.stream_stream_rpc_method_handler(stream_stream, deserialize, serializer)


def interceptors(settings: Settings, service: str, public: bool) -> list[grpc.aio.ServerInterceptor]:
    """The shell's interceptor for one server, or none when it would do nothing."""
    recorder = metrics.RpcRecorder(service) if metrics_port(service, settings) else None
    tokens = security.TokenPolicy.from_settings(settings) if public else None
    limit = int(settings.max_request_mb * 2**20) if public else None
    if recorder is None and (tokens is None or not tokens.enabled) and limit is None:
        return []
    return [ShellInterceptor(recorder, tokens, limit)]


async def _watch_redis(store: Store, health: HealthServicer, names: list[str], interval: float) -> None:
    serving = True
    while True:
        await asyncio.sleep(interval)
        ok = await store.ping()
        if ok != serving:
            serving = ok
            status = (
                health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for n in names:
                await health.set(n, status)
            logs.event(log, "redis reachable again" if ok else "redis lost", logging.WARNING, url=store.url)


def metrics_port(name: str, settings: Settings) -> int | None:
    """The Prometheus port of this process's service; None when metrics are off."""
    if settings.metrics_port:
        return settings.metrics_port
    if not settings.metrics_port_offset:
        return None
    return settings.service_port(name) + settings.metrics_port_offset


def _metrics_endpoint(name: str, settings: Settings) -> metrics.Endpoint | None:
    """Start the Prometheus endpoint. A port that cannot be bound is logged as an error and
    the service goes on without it: observability must not take serving down."""
    port = metrics_port(name, settings)
    if port is None:
        return None
    try:
        if port > 65535:
            raise OSError(f"port {port} is over 65535 (SMILESS_METRICS_PORT_OFFSET)")
        return metrics.Endpoint(settings.host, port)
    except OSError as exc:
        print(f"smiless {name}: cannot serve metrics on {settings.host}:{port}: {exc}", file=sys.stderr)
        logs.event(log, "metrics endpoint unavailable", logging.ERROR, port=port, error=str(exc))
        return None


SHUTDOWN_MARGIN_S = 10.0
"""How long stopping may take past the drain delay and the grace period before the process
exits anyway (`ShutdownWatchdog`)."""

SHUTDOWN_STUCK_EXIT = 3
"""The exit status of a process the watchdog ended."""


class ShutdownWatchdog:
    """Ends the process if its shutdown overruns: a stop that hangs (a task that ignores its
    cancellation, a library thread the interpreter waits for at exit) must not keep a drained
    service alive until a supervisor's SIGKILL. It says which step it was stuck in."""

    def __init__(self, name: str, after_s: float) -> None:
        self.name, self.after_s, self.step = name, after_s, "draining"
        self._timer = threading.Timer(after_s, self._fire)
        self._timer.daemon = True  # it must not itself keep the interpreter from exiting
        self._timer.start()

    def _fire(self) -> None:
        print(
            f"smiless {self.name}: shutdown did not finish within {self.after_s:g} s "
            f"(stuck {self.step}); exiting",
            file=sys.stderr,
            flush=True,
        )
        os._exit(SHUTDOWN_STUCK_EXIT)


async def serve(service: Service, settings: Settings, store: Store) -> None:
    """Run `service` until SIGTERM/SIGINT, then drain gracefully."""
    if not await store.ping():
        print(f"smiless {service.name}: cannot reach Redis at {settings.redis_url}", file=sys.stderr)
        raise SystemExit(2)
    public = service.name == PUBLIC_SERVICE
    server = grpc.aio.server(
        options=grpc_options(settings), interceptors=interceptors(settings, service.name, public)
    )
    names = service.add_to_server(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    addr = f"{settings.host}:{settings.service_port(service.name)}"
    try:
        tls = public and security.tls_enabled(settings)
        if tls:
            server.add_secure_port(addr, security.server_credentials(settings))
        else:
            server.add_insecure_port(addr)
    except (RuntimeError, security.SecurityConfigError) as exc:
        print(f"smiless {service.name}: cannot listen on {addr}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    endpoint = _metrics_endpoint(service.name, settings)
    fleet: asyncio.Task[None] | None = None
    if endpoint is not None and service.name == metrics.FLEET_SERVICE:
        fleet = asyncio.create_task(
            metrics.run_fleet(metrics.fleet_collector(), store, settings.metrics_refresh_s)
        )
    await service.start()
    await server.start()
    for n in ["", *names]:
        await health.set(n, health_pb2.HealthCheckResponse.SERVING)
    logs.event(
        log,
        "serving",
        service=service.name,
        address=addr,
        tls=tls,
        metrics=endpoint.address if endpoint else "",
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_redis(store, health, ["", *names], settings.redis_check_interval_s))
    await stop.wait()
    watchdog = ShutdownWatchdog(
        service.name, settings.drain_delay_s + settings.grace_period_s + SHUTDOWN_MARGIN_S
    )
    logs.event(log, "draining", service=service.name, grace_s=settings.grace_period_s)
    await health.enter_graceful_shutdown()
    # Let health checkers see NOT_SERVING (and route elsewhere) before new calls are refused.
    await asyncio.sleep(settings.drain_delay_s)
    await stop_task(watcher)
    watchdog.step = "stopping the gRPC server"
    await server.stop(settings.grace_period_s)
    watchdog.step = "stopping the service"
    await service.stop()
    watchdog.step = "closing"
    await stop_task(fleet)
    if endpoint is not None:
        endpoint.close()
    await store.close()
    watchdog.step = "at interpreter exit"  # (its timer thread is a daemon: it ends with the process)
    logs.event(log, "stopped", service=service.name)
