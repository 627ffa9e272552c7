"""The service shell: Redis at start-up, Redis lost and back, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smiless import appspec, tensors, zoo
from smiless.config import SERVICE_NAMES
from smiless.server import SHUTDOWN_STUCK_EXIT
from smiless.stack import LocalStack, free_port, health_status
from smiless.store import Store
from smiless.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.conftest import RedisServer
from tests.waiting import wait_until_sync


def _serve(name: str, redis_url: str, port: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "smiless", "serve", name, "--port", str(port)],
        env={**os.environ, "SMILESS_REDIS_URL": redis_url, "SMILESS_REDIS_CHECK_INTERVAL_S": "0.2", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(address: str, want: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while (got := health_status(address, 0.5)) != want:
        assert time.time() < deadline, f"{address} is {got}, expected {want}"
        time.sleep(0.1)


def test_unreachable_redis_at_startup_is_one_clear_line() -> None:
    proc = _serve(
        "predictor", f"redis://127.0.0.1:{free_port()}/0", free_port(), SMILESS_REDIS_TIMEOUT_S="0.5"
    )
    _, errs = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert errs.strip().splitlines() == [errs.strip()], "exactly one line"
    assert "cannot reach Redis" in errs and "Traceback" not in errs


def test_redis_lost_then_back(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    port = free_port()
    proc = _serve("profiler", redis.url, port, SMILESS_REDIS_TIMEOUT_S="0.5")
    addr = f"127.0.0.1:{port}"
    try:
        _wait(addr, "SERVING")
        redis.stop()
        _wait(addr, "NOT_SERVING")
        assert proc.poll() is None, "the service stays up without Redis"
        redis.start()
        _wait(addr, "SERVING")
    finally:
        proc.terminate()
        try:
            _, errs = proc.communicate(timeout=40)  # reads the pipes, which must not fill
        finally:
            redis.stop()
    assert proc.returncode == 0, errs[-2000:]


def test_a_stuck_shutdown_ends_the_process() -> None:
    """The watchdog started at SIGTERM ends a process whose stop hangs (here: blocked in
    a sleep that nothing interrupts), says where it was stuck, and exits with its status."""
    code = (
        "import time\n"
        "from smiless.server import ShutdownWatchdog\n"
        "w = ShutdownWatchdog('probe', 0.5)\n"
        "w.step = 'stopping the service'\n"
        "time.sleep(60)\n"
    )
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == SHUTDOWN_STUCK_EXIT
    assert "shutdown did not finish within 0.5 s (stuck stopping the service)" in done.stderr
    assert time.time() - t0 < 20


def _instances_of(redis_url: str, app: str) -> list[common_pb2.Instance]:
    async def read() -> list[common_pb2.Instance]:
        store = Store(redis_url)
        try:
            return [i for i in await store.list_instances() if i.app == app]
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.e2e
def test_sigterm_drains_in_flight_calls(tmp_path: Path) -> None:
    """An invocation that is cold (it waits seconds for a worker) still completes after
    the gateway gets SIGTERM, and health turns NOT_SERVING while it drains."""
    stack = LocalStack(
        tmp_path,
        ports={n: free_port() for n in SERVICE_NAMES},
        extra_env={"SMILESS_GRACE_PERIOD_S": "60", "SMILESS_DRAIN_DELAY_S": "2"},
    )
    stack.start()
    try:
        addr = stack.addresses["gateway"]
        with grpc.insecure_channel(addr) as ch:
            gw = gateway_pb2_grpc.GatewayStub(ch)
            spec = appspec.load_file(appspec.EXAMPLES_DIR / "image-query.yaml")
            gw.RegisterApp(gateway_pb2.RegisterAppRequest(app=appspec.to_proto(spec)), timeout=10)
            x = tensors.to_proto(zoo.MODELS["imagerecognition"].example_input())
            result: dict[str, object] = {}

            def invoke() -> None:
                try:
                    result["resp"] = gw.Invoke(gateway_pb2.InvokeRequest(app=spec.name, input=x), timeout=120)
                except grpc.RpcError as exc:
                    result["error"] = exc

            t = threading.Thread(target=invoke)
            t.start()
            # The call is in flight once it asked the optimizer for the cold workers.
            wait_until_sync(
                lambda: _instances_of(str(stack.redis_url), spec.name), 30, "the cold call's worker starts"
            )
            stack.procs["gateway"].send_signal(signal.SIGTERM)
            saw_draining = False
            with grpc.insecure_channel(addr) as probe:
                deadline = time.time() + 5
                while time.time() < deadline and not saw_draining:
                    try:
                        st = health_pb2_grpc.HealthStub(probe).Check(
                            health_pb2.HealthCheckRequest(), timeout=0.5
                        )
                        saw_draining = st.status == health_pb2.HealthCheckResponse.NOT_SERVING
                    except grpc.RpcError:
                        break
                    time.sleep(0.05)
            t.join(120)
            assert "error" not in result, result.get("error")
            resp = result["resp"]
            assert isinstance(resp, gateway_pb2.InvokeResponse) and set(resp.outputs) == {"qa"}
            assert saw_draining
            assert stack.procs["gateway"].wait(30) == 0
    finally:
        stack.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apps", "register", "/nonexistent.yaml"], "cannot read"),
        (["status"], "cannot reach the gateway"),
        (["serve", "nosuch"], "unknown service"),
    ],
)
def test_cli_user_errors_are_one_line(args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smiless", *args],
        env={**os.environ, "SMILESS_GATEWAY_ADDR": f"127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr
