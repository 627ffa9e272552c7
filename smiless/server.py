"""The service shell every smiless service runs in.

`run_service()` starts a `grpc.aio` server with the standard health service (SERVING
once ready, NOT_SERVING while draining or while Redis is unreachable) and server
reflection, checks Redis before it accepts calls, watches Redis afterwards, and on
SIGTERM/SIGINT drains: NOT_SERVING first, then in-flight calls get the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from redis.exceptions import RedisError

from smiless import logs
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


async def serve(service: Service, settings: Settings, store: Store) -> None:
    """Run `service` until SIGTERM/SIGINT, then drain gracefully."""
    if not await store.ping():
        print(f"smiless {service.name}: cannot reach Redis at {settings.redis_url}", file=sys.stderr)
        raise SystemExit(2)
    server = grpc.aio.server(options=grpc_options(settings))
    names = service.add_to_server(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    addr = f"{settings.host}:{settings.service_port(service.name)}"
    try:
        server.add_insecure_port(addr)
    except RuntimeError as exc:
        print(f"smiless {service.name}: cannot listen on {addr}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    await service.start()
    await server.start()
    for n in ["", *names]:
        await health.set(n, health_pb2.HealthCheckResponse.SERVING)
    logs.event(log, "serving", service=service.name, address=addr)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_redis(store, health, ["", *names], settings.redis_check_interval_s))
    await stop.wait()
    logs.event(log, "draining", service=service.name, grace_s=settings.grace_period_s)
    await health.enter_graceful_shutdown()
    # Let health checkers see NOT_SERVING (and route elsewhere) before new calls are refused.
    await asyncio.sleep(settings.drain_delay_s)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await server.stop(settings.grace_period_s)
    await service.stop()
    await store.close()
    logs.event(log, "stopped", service=service.name)
