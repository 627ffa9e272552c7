"""API tokens and TLS of the client-facing gateway (README "Security").

The gateway is the one API clients reach; the other services and the workers listen on
loopback or the stack's private network and are not guarded here. The policy, applied by
the service shell (smiless/server.py) to every call of the gateway's server except health
checks (container health probes carry no token):

- `SMILESS_API_TOKEN` set: a call must carry `authorization: Bearer <token>` (the admin
  token is accepted too), else UNAUTHENTICATED.
- `SMILESS_ADMIN_TOKEN` set: RegisterApp and DeleteApp need it: no or an unknown token is
  UNAUTHENTICATED, the API token is PERMISSION_DENIED. Unset: app management needs only what
  every call needs.
- `SMILESS_TLS_CERT` + `SMILESS_TLS_KEY` set: the gateway serves TLS only. Clients (the CLI)
  verify it with `SMILESS_TLS_CA`, or with the certificate itself (self-signed).

Tokens are compared in constant time and never logged (Settings holds them as SecretStr).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from smiless.config import Settings

ADMIN_METHODS = frozenset({"/smiless.v1.Gateway/RegisterApp", "/smiless.v1.Gateway/DeleteApp"})
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
AUTH_KEY = "authorization"


class SecurityConfigError(ValueError):
    """A TLS file that cannot be read: the service refuses to start (one clear line)."""


def bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> bytes | None:
    """The token of the call's `authorization: Bearer ...` metadata, None when absent."""
    for key, value in metadata or ():
        if key == AUTH_KEY:
            raw = value.encode() if isinstance(value, str) else value
            scheme, _, token = raw.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
    return None


@dataclass(frozen=True)
class TokenPolicy:
    api: bytes
    admin: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenPolicy:
        return cls(
            settings.api_token.get_secret_value().encode(), settings.admin_token.get_secret_value().encode()
        )

    @property
    def enabled(self) -> bool:
        return bool(self.api or self.admin)

    def check(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may proceed, else the status and message to refuse it with."""
        if method.startswith(OPEN_PREFIXES):
            return None
        admin_call = method in ADMIN_METHODS and bool(self.admin)
        if not admin_call and not self.api:
            return None
        token = bearer(metadata)
        if token is None:
            return grpc.StatusCode.UNAUTHENTICATED, f"{AUTH_KEY}: missing (send 'Bearer <token>' metadata)"
        is_admin = bool(self.admin) and hmac.compare_digest(token, self.admin)
        is_api = bool(self.api) and hmac.compare_digest(token, self.api)
        if admin_call:
            if is_admin:
                return None
            if is_api:
                name = method.rsplit("/", 1)[-1]
                return grpc.StatusCode.PERMISSION_DENIED, f"{AUTH_KEY}: {name} needs the admin token"
            return grpc.StatusCode.UNAUTHENTICATED, f"{AUTH_KEY}: unknown token"
        if is_api or is_admin:
            return None
        return grpc.StatusCode.UNAUTHENTICATED, f"{AUTH_KEY}: unknown token"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"{what}: cannot read {path}: {exc.strerror}") from exc


def tls_enabled(settings: Settings) -> bool:
    """True with both a certificate and its key; one without the other is a config error."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        missing = "tls_key" if settings.tls_key is None else "tls_cert"
        raise SecurityConfigError(
            f"{missing}: required with {'tls_cert' if missing == 'tls_key' else 'tls_key'}"
        )
    return settings.tls_cert is not None


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    assert settings.tls_cert is not None and settings.tls_key is not None
    key = _read(settings.tls_key, "tls_key")
    cert = _read(settings.tls_cert, "tls_cert")
    return grpc.ssl_server_credentials([(key, cert)])


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS credentials to reach the gateway, None when the gateway is plaintext."""
    roots = settings.tls_ca or settings.tls_cert
    if roots is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=_read(roots, "tls_ca"))


def client_token(settings: Settings) -> str:
    """The token a client sends: the admin token (it may do everything) or the API token."""
    return settings.admin_token.get_secret_value() or settings.api_token.get_secret_value()


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <token>` to every call of a (sync) channel."""

    def __init__(self, token: str) -> None:
        self.header = (AUTH_KEY, f"Bearer {token}")

    def _details(self, d: Any) -> _Details:
        metadata = [*(d.metadata or ()), self.header]
        return _Details(
            d.method,
            d.timeout,
            metadata,
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def gateway_channel(
    settings: Settings, address: str, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A (sync) channel to the gateway with TLS and the token as configured."""
    creds = channel_credentials(settings)
    channel = (
        grpc.secure_channel(address, creds, options=options)
        if creds is not None
        else grpc.insecure_channel(address, options=options)
    )
    token = client_token(settings)
    return grpc.intercept_channel(channel, BearerInterceptor(token)) if token else channel


class _AioBearer:
    """Adds `authorization: Bearer <token>` to the calls of a grpc.aio channel. grpc.aio files
    an interceptor under its first matching kind only, so each kind gets its own subclass."""

    def __init__(self, token: str) -> None:
        self.header = (AUTH_KEY, f"Bearer {token}")

    def _details(self, d: Any) -> Any:
        metadata = grpc.aio.Metadata(*(d.metadata or ()), self.header)
        return grpc.aio.ClientCallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready)


class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def gateway_aio_channel(
    settings: Settings, address: str, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel to the gateway with TLS and the token as configured (for load
    generators: without a token configured it is a plain channel, no interceptor cost)."""
    creds = channel_credentials(settings)
    token = client_token(settings)
    kinds = (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)
    interceptors = [k(token) for k in kinds] if token else None
    if creds is not None:
        return grpc.aio.secure_channel(address, creds, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
