"""Shared fixtures: every test that needs Redis or the stack starts its own, on free
loopback ports; nothing assumes a running server and nothing leaves 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from smiless.config import SERVICE_NAMES
from smiless.stack import LocalStack, free_port, start_redis


class RedisServer:
    """A real redis-server on a free port, restartable on the same port and data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc, _ = start_redis(self.data_dir, self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (the CI script installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database for each test."""
    with redis_server.client() as c:
        c.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole embedded stack (its own Redis and four services), shared by a session."""
    data = tmp_path_factory.mktemp("stack")
    s = LocalStack(
        data,
        ports={n: free_port() for n in SERVICE_NAMES},
        extra_env={"SMILESS_LOG_FORMAT": "json"},
        metrics_ports={n: free_port() for n in SERVICE_NAMES},  # not port + 1000: it may be taken
    )
    s.start()
    yield s
    s.stop()
