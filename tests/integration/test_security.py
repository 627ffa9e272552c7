"""API and admin tokens, the request size limit and TLS of a real gateway over loopback
(its own process, real Redis), from gRPC clients and from the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smiless import appspec
from smiless.stack import free_port
from smiless.v1 import gateway_pb2, gateway_pb2_grpc

API, ADMIN = "api-secret-123", "admin-secret-456"


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    address: str
    env: dict[str, str]


def _start(redis_url: str, creds: grpc.ChannelCredentials | None = None, **env: str) -> Gateway:
    port = free_port()
    full = {
        **os.environ,
        "SMILESS_REDIS_URL": redis_url,
        "SMILESS_METRICS_PORT_OFFSET": "0",
        "SMILESS_GATEWAY_ADDR": f"127.0.0.1:{port}",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "smiless", "serve", "gateway"],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        ch = grpc.secure_channel(address, creds) if creds else grpc.insecure_channel(address)
        with ch:
            try:
                st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if st.status == health_pb2.HealthCheckResponse.SERVING:
                    return Gateway(proc, address, full)
            except grpc.RpcError:
                pass
        assert time.time() < deadline, "gateway did not become SERVING"
        time.sleep(0.1)


def _stop(gw: Gateway) -> None:
    gw.proc.terminate()
    gw.proc.wait(30)


def _spec(name: str, description: str = "") -> gateway_pb2.RegisterAppRequest:
    spec = appspec.validate(
        appspec.from_dict(
            {
                "name": name,
                "sla": 5,
                "functions": [{"name": "m", "model": "tiny-mlp"}],
                "description": description,
            }
        )
    )
    return gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec), replace=True)


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _code(fn: object, request: object, metadata: list[tuple[str, str]] | None = None) -> grpc.StatusCode:
    try:
        fn(request, metadata=metadata, timeout=10)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
def guarded(redis_url: str) -> Iterator[Gateway]:
    """A gateway with an API token, an admin token and a 64 KiB request limit."""
    gw = _start(
        redis_url, SMILESS_API_TOKEN=API, SMILESS_ADMIN_TOKEN=ADMIN, SMILESS_MAX_REQUEST_MB=str(64 / 1024)
    )
    yield gw
    _stop(gw)


def test_api_token_on_every_call(guarded: Gateway) -> None:
    with grpc.insecure_channel(guarded.address) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        req = gateway_pb2.ListAppsRequest()
        assert _code(stub.ListApps, req) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(stub.ListApps, req, _bearer("wrong")) == grpc.StatusCode.UNAUTHENTICATED
        assert (
            _code(stub.ListApps, req, [("authorization", f"Basic {API}")]) == grpc.StatusCode.UNAUTHENTICATED
        )
        assert _code(stub.ListApps, req, _bearer(API)) == grpc.StatusCode.OK
        assert _code(stub.ListApps, req, _bearer(ADMIN)) == grpc.StatusCode.OK, "admin may do everything"
        for rpc, request in [
            (stub.Invoke, gateway_pb2.InvokeRequest(app="x")),
            (stub.GetStatus, gateway_pb2.GetStatusRequest()),
            (stub.GetCostReport, gateway_pb2.GetCostReportRequest()),
            (stub.GetApp, gateway_pb2.GetAppRequest(name="x")),
        ]:
            assert _code(rpc, request) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            stub.ListApps(req, timeout=10)
        assert err.value.details().startswith("authorization:")
        stream = stub.InvokeStream(iter([gateway_pb2.InvokeStreamRequest()]), timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            list(stream)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # health checks stay open (container probes carry no token)
        st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert st.status == health_pb2.HealthCheckResponse.SERVING


def test_admin_token_for_app_management(guarded: Gateway) -> None:
    with grpc.insecure_channel(guarded.address) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        reg = _spec("guarded-app")
        assert _code(stub.RegisterApp, reg) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(stub.RegisterApp, reg, _bearer(API)) == grpc.StatusCode.PERMISSION_DENIED
        assert _code(stub.RegisterApp, reg, _bearer(ADMIN)) == grpc.StatusCode.OK
        got = stub.GetApp(gateway_pb2.GetAppRequest(name="guarded-app"), metadata=_bearer(API), timeout=10)
        assert got.app.spec.name == "guarded-app"
        delete = gateway_pb2.DeleteAppRequest(name="guarded-app")
        assert _code(stub.DeleteApp, delete, _bearer(API)) == grpc.StatusCode.PERMISSION_DENIED
        assert _code(stub.DeleteApp, delete, _bearer(ADMIN)) == grpc.StatusCode.OK


def test_request_size_limit(guarded: Gateway) -> None:
    with grpc.insecure_channel(guarded.address) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        big = _spec("big-app", "x" * 100_000)
        with pytest.raises(grpc.RpcError) as err:
            stub.RegisterApp(big, metadata=_bearer(ADMIN), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.details().startswith("request:") and "SMILESS_MAX_REQUEST_MB" in err.value.details()
        assert _code(stub.RegisterApp, _spec("small-app", "x" * 1000), _bearer(ADMIN)) == grpc.StatusCode.OK
    assert guarded.proc.poll() is None, "the gateway survives an oversized request"


def test_cli_sends_the_token(guarded: Gateway) -> None:
    def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in guarded.env.items() if k not in ("SMILESS_API_TOKEN", "SMILESS_ADMIN_TOKEN")}
        return subprocess.run(
            [sys.executable, "-m", "smiless", *args, "--gateway", guarded.address],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    denied = cli("apps", "list")
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr and "Traceback" not in denied.stderr
    assert cli("apps", "list", "--json", SMILESS_API_TOKEN=API).returncode == 0
    assert cli("status", "--json", SMILESS_API_TOKEN=API).returncode == 0


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_with_a_self_signed_certificate(redis_url: str, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    gw = _start(redis_url, creds, SMILESS_TLS_CERT=str(cert), SMILESS_TLS_KEY=str(key), SMILESS_API_TOKEN=API)
    try:
        with grpc.secure_channel(gw.address, creds) as ch:
            stub = gateway_pb2_grpc.GatewayStub(ch)
            assert _code(stub.ListApps, gateway_pb2.ListAppsRequest(), _bearer(API)) == grpc.StatusCode.OK
            assert _code(stub.ListApps, gateway_pb2.ListAppsRequest()) == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(gw.address) as plain:
            code = _code(
                gateway_pb2_grpc.GatewayStub(plain).ListApps, gateway_pb2.ListAppsRequest(), _bearer(API)
            )
            assert code == grpc.StatusCode.UNAVAILABLE, "plaintext is refused"
        env = {**gw.env, "SMILESS_TLS_CA": str(cert)}
        env.pop("SMILESS_TLS_KEY")
        out = subprocess.run(
            [sys.executable, "-m", "smiless", "apps", "list", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[]"

        def health(*flags: str) -> int:
            cmd = [sys.executable, "-m", "smiless", "health", gw.address, *flags]
            return subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode

        assert health("--tls") == 0, "container probes reach a TLS gateway with --tls"
        assert health() == 1
    finally:
        _stop(gw)


@pytest.mark.parametrize(
    ("files", "field"), [(("missing.pem", "missing.key"), "tls_key"), (("missing.pem", None), "tls_key")]
)
def test_bad_tls_config_is_one_clear_line(
    redis_url: str, tmp_path: Path, files: tuple[str, str | None], field: str
) -> None:
    """An unreadable certificate, or a certificate without its key, never serves plaintext."""
    env = {**os.environ, "SMILESS_REDIS_URL": redis_url, "SMILESS_TLS_CERT": str(tmp_path / files[0])}
    if files[1]:
        env["SMILESS_TLS_KEY"] = str(tmp_path / files[1])
    proc = subprocess.run(
        [sys.executable, "-m", "smiless", "serve", "gateway", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{field}:" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


async def test_aio_channel_carries_the_token(guarded: Gateway) -> None:
    from pydantic import SecretStr

    from smiless import security
    from smiless.config import Settings

    settings = Settings().model_copy(update={"api_token": SecretStr(API)})
    async with security.gateway_aio_channel(settings, guarded.address) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        assert (await stub.ListApps(gateway_pb2.ListAppsRequest(), timeout=10)).apps == []
        req = gateway_pb2.InvokeStreamRequest(invocation=gateway_pb2.InvokeRequest(app="no-such-app"))
        answers = [a async for a in stub.InvokeStream(iter([req]), timeout=10)]
        assert [a.code for a in answers] == [grpc.StatusCode.NOT_FOUND.value[0]], "past auth, to the handler"
