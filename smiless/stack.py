"""The embedded local stack behind `smiless up`: Redis and the four services as child
processes on loopback, for machines without Docker Compose (and for the tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smiless.config import DEFAULT_PORTS, SERVICE_NAMES


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def health_status(
    address: str, timeout: float = 1.0, credentials: grpc.ChannelCredentials | None = None
) -> str:
    """SERVING / NOT_SERVING / UNREACHABLE for the standard health check at `address`
    (over TLS with `credentials`: a gateway that serves TLS)."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def start_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start `redis-server` on a free loopback port with append-only persistence in data_dir."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise StackError(
            "redis-server not found on PATH: install it (apt-get install redis-server) "
            "or point SMILESS_REDIS_URL at a running Redis"
        )
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
    args += ["--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes"]
    with open(data_dir / "redis.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 10
    while not port_in_use(port):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise StackError(f"redis-server did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def _gateway_credentials(env: dict[str, str]) -> grpc.ChannelCredentials | None:
    """TLS credentials for the gateway the stack starts with `env` (None: plaintext)."""
    from smiless import security
    from smiless.config import Settings

    if not env.get("SMILESS_TLS_CERT") or not env.get("SMILESS_TLS_KEY"):
        return None
    fields = {
        k: env[f"SMILESS_{k.upper()}"]
        for k in ("tls_cert", "tls_key", "tls_ca")
        if env.get(f"SMILESS_{k.upper()}")
    }
    try:
        return security.channel_credentials(Settings.model_validate(fields))
    except security.SecurityConfigError as exc:
        raise StackError(str(exc)) from exc


@dataclass
class LocalStack:
    data_dir: Path
    redis_url: str | None = None
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Prometheus port per service (SMILESS_METRICS_PORT of each process); unset: port + offset.
    metrics_ports: dict[str, int] | None = None

    @property
    def addresses(self) -> dict[str, str]:
        return {n: f"127.0.0.1:{p}" for n, p in self.ports.items()}

    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        env["SMILESS_REDIS_URL"] = str(self.redis_url)
        for name, addr in self.addresses.items():
            env[f"SMILESS_{name.upper()}_ADDR"] = addr
        return env

    def log_path(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def start(self, timeout_s: float = 60.0) -> None:
        busy = [f"{n} ({p})" for n, p in self.ports.items() if port_in_use(p)]
        if busy:
            raise StackError(f"ports already in use: {', '.join(busy)}; is another smiless running?")
        if self.redis_url is None:
            self.procs["redis"], self.redis_url = start_redis(self.data_dir / "redis")
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        env = self.env()
        for name in SERVICE_NAMES:
            with open(self.log_path(name), "wb") as log:  # the child keeps its own descriptor
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "smiless", "serve", name],
                    env={**env, "SMILESS_METRICS_PORT": str(self.metrics_ports[name])}
                    if self.metrics_ports
                    else env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        deadline = time.time() + timeout_s
        pending = set(SERVICE_NAMES)
        creds = {"gateway": _gateway_credentials(env)}
        while pending:
            for name in list(pending):
                proc = self.procs[name]
                if proc.poll() is not None:
                    tail = self.log_path(name).read_text(errors="replace").strip().splitlines()[-3:]
                    self.stop()
                    raise StackError(f"{name} exited with code {proc.returncode}: {' | '.join(tail)}")
                if health_status(self.addresses[name], 0.5, creds.get(name)) == "SERVING":
                    pending.discard(name)
            if pending and time.time() > deadline:
                self.stop()
                raise StackError(f"not healthy after {timeout_s:.0f} s: {', '.join(sorted(pending))}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the services (the optimizer stops its workers), then Redis."""
        services = [p for n, p in self.procs.items() if n != "redis"]
        for p in services:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in services:
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        redis = self.procs.get("redis")
        if redis is not None and redis.poll() is None:
            redis.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                redis.wait(10)
            if redis.poll() is None:
                redis.kill()
        self.procs.clear()
