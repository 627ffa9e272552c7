"""Docker backend: one container per instance, the hardware config as resource limits.

- CPU configs: `nano_cpus` = cores (a hard CFS quota) and `mem_limit` = the config's memory;
  torch's intra-op threads = the cores.
- GPU configs: a device request for one GPU plus `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` = the
  share; refused with a clear error when the engine has no GPU (nvidia) runtime.
- The worker's port is published on 127.0.0.1 only, on a port the engine picks; or, when
  `network` is set (docker compose), the worker joins that network and is reached by name.
- A user model (`torchscript:/abs/path.pt`) is bind-mounted read-only at the same path, so
  the worker's `--model` is the same name; the file must be readable by the worker's uid
  (10001), or the worker exits at start saying so.
- Every container carries labels naming it a smiless instance (`io.smiless.*`), so a
  restarted controller finds, re-adopts or removes what an earlier run left (`adopt()`).

The Docker SDK is blocking; every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest

from smiless import zoo
from smiless.backends.base import (
    WORKER_ENV,
    AdoptedWorker,
    BackendError,
    ExitWatch,
    StartedWorker,
    check_model,
    host_capacity,
    host_gpus,
    start_error,
)
from smiless.backends.process import init_phases, wait_serving
from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.capacity import Capacity, Demand

LABEL = "io.smiless.instance"
OWNER_LABEL = "io.smiless.owner"  # which controller's containers (adopt() takes back only its own)
MAX_WAITERS = 256  # containers one backend can watch at once
WORKER_PORT = 50000


class DockerBackend(ExitWatch):
    name = "docker"

    def __init__(
        self,
        image: str = "smiless-worker:latest",
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 5.0,
        client: Any | None = None,
        network: str = "",
        owner: str = "smiless",
    ) -> None:
        super().__init__()
        try:
            self.client = client or docker.from_env(max_pool_size=MAX_WAITERS)
            self.client.ping()
        except DockerException as exc:
            raise BackendError(f"docker engine unreachable: {exc}") from exc
        self.image = image
        self.owner = owner
        self.network = network
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.containers: dict[str, Any] = {}
        self.held: dict[str, Demand] = {}
        # Each live container has a thread blocked in `wait` (it returns the moment the
        # container exits). They get their own pool: in the default one they would starve
        # every other engine call once a handful of containers run.
        self._waiters = ThreadPoolExecutor(max_workers=MAX_WAITERS, thread_name_prefix="smiless-wait")

    def gpu_runtime(self) -> bool:
        return "nvidia" in (self.client.info().get("Runtimes") or {})

    def _run_args(
        self, instance_id: str, model: str, config: HardwareConfig, created: float, app: str, function: str
    ) -> dict[str, Any]:
        threads = max(1, math.floor(config.cores))
        demand = Demand.of(config)
        args: dict[str, Any] = {
            "image": self.image,
            "command": [
                "--model",
                model,
                "--config",
                config.name,
                "--threads",
                str(threads),
                "--host",
                "0.0.0.0",
                "--port",
                str(WORKER_PORT),
            ],
            "name": f"smiless-{instance_id}",
            "labels": {
                LABEL: instance_id,
                OWNER_LABEL: self.owner,
                "io.smiless.model": model,
                "io.smiless.config": config.name,
                "io.smiless.app": app,
                "io.smiless.function": function,
                # what it holds, for capacity() after a restart
                "io.smiless.cpus": f"{demand.cpus:g}",
                "io.smiless.gpus": f"{demand.gpus:g}",
                "io.smiless.memory_mb": str(demand.memory_mb),
            },
            # Beside the services on a user network (compose), or published on loopback.
            **(
                {"network": self.network}
                if self.network
                else {"ports": {f"{WORKER_PORT}/tcp": ("127.0.0.1", None)}}
            ),
            "nano_cpus": int(config.cores * 1e9),
            "mem_limit": f"{config.memory_mb}m",
            "environment": {
                **WORKER_ENV,
                "SMILESS_WORKER_SPAWNED_AT": f"{created:.6f}",
                "OMP_NUM_THREADS": str(threads),
            },
            "detach": True,
        }
        if zoo.is_torchscript(model):
            path = zoo.torchscript_path(model)
            args["volumes"] = {path: {"bind": path, "mode": "ro"}}
        if config.kind is Kind.GPU:
            args["device_requests"] = [DeviceRequest(count=1, capabilities=[["gpu"]])]
            args["environment"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = f"{config.gpu_share:g}"
        return args

    def _address(self, container: Any) -> str:
        if self.network:
            return f"{container.name}:{WORKER_PORT}"
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{WORKER_PORT}/tcp") or []
        if not bindings:
            raise BackendError(f"{container.name}: the worker port is not published")
        return f"127.0.0.1:{bindings[0]['HostPort']}"

    async def start(
        self, instance_id: str, model: str, config: HardwareConfig, *, app: str = "", function: str = ""
    ) -> StartedWorker:
        check_model(model)
        if config.kind is Kind.GPU and not await asyncio.to_thread(self.gpu_runtime):
            raise BackendError(f"{config.name} needs a GPU, but this docker engine has no GPU runtime")
        spawned = time.time()
        try:
            container = await asyncio.to_thread(
                lambda: self.client.containers.create(
                    **self._run_args(instance_id, model, config, spawned, app, function)
                )
            )
        except ImageNotFound as exc:
            raise BackendError(f"image {self.image} not found: build it (scripts/build-images.sh)") from exc
        except APIError as exc:
            raise BackendError(f"cannot create the container of {instance_id}: {exc.explanation}") from exc
        created = time.time()
        self.containers[instance_id] = container
        self.held[instance_id] = Demand.of(config)
        try:
            await asyncio.to_thread(container.start)
            started = time.time()
            self.exits[instance_id] = asyncio.create_task(self._wait(container))
            address = await asyncio.to_thread(self._address, container)
            await wait_serving(address, spawned + self.start_timeout_s, self.exits[instance_id])
            phases = await init_phases(address)
        except (BackendError, APIError, Exception) as exc:
            logs = await asyncio.to_thread(self._logs, container)
            exit_code = self.exit_code(instance_id)
            await self.stop(instance_id)
            raise start_error(
                f"{model} on {config.name}: {exc}" + (f" (log: {logs})" if logs else ""), exit_code
            ) from exc
        ready = time.time()
        # The worker measured process_start from `spawned`; split off what the engine took.
        engine_start = started - created
        phases = {
            "container_create": created - spawned,
            "container_start": engine_start,
            **phases,
            "process_start": max(0.0, phases.get("process_start", 0.0) - (created - spawned) - engine_start),
        }
        phases["serve_ready"] = max(0.0, (ready - spawned) - sum(phases.values()))
        return StartedWorker(instance_id, address, spawned, ready, phases)

    @staticmethod
    def _logs(container: Any) -> str:
        with contextlib.suppress(DockerException):
            lines = container.logs(tail=5).decode(errors="replace").strip().splitlines()
            return " | ".join(lines)
        return ""

    async def _wait(self, container: Any) -> int:
        result = await asyncio.get_running_loop().run_in_executor(self._waiters, container.wait)
        return int(result.get("StatusCode", -1))

    async def stop(self, instance_id: str) -> None:
        container = self.containers.pop(instance_id, None)
        task = self.exits.pop(instance_id, None)
        self.held.pop(instance_id, None)
        if container is None:
            return
        with contextlib.suppress(NotFound):
            # docker stop: SIGTERM, then SIGKILL after the deadline.
            await asyncio.to_thread(container.stop, timeout=max(1, math.ceil(self.stop_timeout_s)))
        with contextlib.suppress(NotFound):
            await asyncio.to_thread(container.remove, force=True)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def capacity(self) -> Capacity:
        """The engine's host (this machine), less the limits of the containers it runs."""
        gpus = host_gpus() if await asyncio.to_thread(self.gpu_runtime) else 0
        return host_capacity(self.held.values(), gpus)

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(i) for i in list(self.containers)), return_exceptions=True)
        self._waiters.shutdown(wait=False, cancel_futures=True)

    async def adopt(self) -> list[AdoptedWorker]:
        """Find the smiless containers an earlier run of this owner left: running ones are
        adopted (this backend controls them again), stopped ones are removed. No orphans
        survive; another owner's containers (a second controller on the engine) are left alone."""
        found = await asyncio.to_thread(
            lambda: self.client.containers.list(
                all=True, filters={"label": [LABEL, f"{OWNER_LABEL}={self.owner}"]}
            )
        )
        out: list[AdoptedWorker] = []
        for c in found:
            labels = c.labels
            iid = labels[LABEL]
            if c.status == "running":
                try:
                    address = await asyncio.to_thread(self._address, c)
                except BackendError:
                    address = ""
                self.containers[iid] = c
                self.held[iid] = _demand(labels)
                self.exits[iid] = asyncio.create_task(self._wait(c))
                out.append(
                    AdoptedWorker(
                        iid,
                        address,
                        labels.get("io.smiless.model", ""),
                        labels.get("io.smiless.config", ""),
                        True,
                    )
                )
            else:
                with contextlib.suppress(NotFound):
                    await asyncio.to_thread(c.remove, force=True)
                out.append(
                    AdoptedWorker(
                        iid,
                        "",
                        labels.get("io.smiless.model", ""),
                        labels.get("io.smiless.config", ""),
                        False,
                    )
                )
        return out


def _demand(labels: dict[str, str]) -> Demand:
    """What an adopted container holds, from its labels (none on an older run's containers)."""
    try:
        return Demand(
            float(labels["io.smiless.cpus"]),
            float(labels["io.smiless.gpus"]),
            int(labels["io.smiless.memory_mb"]),
        )
    except (KeyError, ValueError):
        return Demand(0.0, 0.0, 0)
