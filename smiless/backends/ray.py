"""Ray backend: each instance is a named, detached Ray actor that runs the worker on a node of
a Ray cluster.

- The actor's resource request is its config's demand (`smiless.policy.capacity.Demand`):
  cpu-N holds N CPUs, gpu-P holds P/100 of a GPU and its cores, both the config's memory.
  Ray keeps them for the actor's life, so instances never oversubscribe a node.
- The node is the placement rule's choice (`Capacity.place`: spread one function's instances,
  best fit for the rest), pinned with a hard node affinity; a start no node has room for is
  refused at once, naming each node's free resources.
- The actor runs the same worker as the other backends (`python -m smiless.worker`), as its
  child process, bound to the node's IP; the child gets SIGTERM when the actor dies, so a
  killed actor or a lost node leaves no worker behind.
- Actors are named `smiless-<instance id>` in a namespace (`smiless`) and carry their model,
  config, app and function, so a restarted optimizer finds and re-adopts them (`adopt()`).
  Being detached, they outlive the optimizer that started them.
- An actor that dies (its node lost, killed from outside) ends `wait_exit` with ACTOR_LOST.

Phases: `scheduling` (the start call until the actor, placed and running, spawns the worker;
across hosts, it counts on the node clocks agreeing), then the worker's own phases, then
`serve_ready`. Ray is an optional extra (`pip install 'smiless[ray]'`), imported only here
and only when this backend is made; every node needs smiless installed beside Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from smiless.backends.base import (
    PARENT_PID_ENV,
    WORKER_ENV,
    AdoptedWorker,
    BackendError,
    ExitWatch,
    StartedWorker,
    check_model,
    start_error,
)
from smiless.backends.process import free_port, init_phases, wait_serving
from smiless.catalogue import HardwareConfig, Kind
from smiless.policy.capacity import Capacity, Demand, Node, Placement, reserve

PREFIX = "smiless-"
"""Actor names: PREFIX + instance id."""
ACTOR_LOST = -1
"""wait_exit's code for an instance whose actor died under it (node lost, killed outside)."""
WAIT_POLL_S = 60.0
"""An actor's `wait` returns at least this often, so an optimizer that died while waiting
does not hold one of the actor's threads for the worker's whole life."""
ACTOR_THREADS = 8  # one waits on the worker per connected optimizer; info, stop and log use others
MIB = 1024 * 1024


class WorkerActor:
    """What runs inside the Ray actor: the worker process on this node, and its watch."""

    def __init__(self, meta: dict[str, Any]) -> None:
        import ray

        self.meta = meta
        self.node_id: str = ray.get_runtime_context().get_node_id()
        self.host: str = ray.util.get_node_ip_address()
        self.log = Path(tempfile.gettempdir()) / "smiless-workers" / f"{meta['instance_id']}.log"
        self.address = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.code: int | None = None
        self.exited = threading.Event()

    def launch(self, args: list[str], env: dict[str, str]) -> dict[str, Any]:
        """Start the worker on a free port of this node; its address and when it was spawned.

        The child is started by a thread that lives until the child exits: the parent-death
        signal the worker asks for (PR_SET_PDEATHSIG) fires when the thread that forked it
        ends, not only when this process does."""
        port = free_port(self.host)
        self.address = f"{self.host}:{port}"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        spawned = time.time()
        argv = [sys.executable, "-m", "smiless.worker", *args, "--host", self.host, "--port", str(port)]
        full_env = {
            **os.environ,
            **env,
            "SMILESS_WORKER_SPAWNED_AT": f"{spawned:.6f}",
            PARENT_PID_ENV: str(os.getpid()),
        }
        started = threading.Event()
        failed: list[OSError] = []

        def run() -> None:
            try:
                with open(self.log, "wb") as log:
                    self.proc = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=full_env
                    )
            except OSError as exc:
                failed.append(exc)
                self.exited.set()
                return
            finally:
                started.set()
            self.code = self.proc.wait()
            self.exited.set()

        threading.Thread(target=run, name="smiless-worker", daemon=True).start()
        started.wait()
        if failed:
            raise failed[0]
        return {"address": self.address, "spawned": spawned}

    def wait(self, timeout_s: float) -> int | None:
        """The worker's exit code once it has exited; None if it still runs after `timeout_s`."""
        return self.code if self.exited.wait(timeout_s) else None

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM (the worker drains its calls), SIGKILL after `timeout_s`; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            if not self.exited.wait(timeout_s):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                self.exited.wait(5)
        return self.code

    def info(self) -> dict[str, Any]:
        running = self.proc is not None and not self.exited.is_set()
        pid = self.proc.pid if self.proc is not None else None
        return {**self.meta, "address": self.address, "node_id": self.node_id, "running": running, "pid": pid}

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


@functools.cache
def _actor_class() -> Any:
    import ray

    return ray.remote(WorkerActor)


def connect(address: str, timeout_s: float) -> None:
    """Join the Ray cluster at `address` (host:port of its GCS, or `auto`) as a driver, or
    raise BackendError naming the address within about `timeout_s`: Ray's own connect
    retries for minutes. A process joins one cluster; later calls share that connection."""
    try:
        import ray
    except ImportError as exc:
        raise BackendError("the ray backend needs Ray: pip install 'smiless[ray]'") from exc
    if address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
        except (OSError, ValueError) as exc:
            raise BackendError(f"ray cluster at {address} unreachable: {exc}") from exc
    if ray.is_initialized():
        return
    failed: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except BaseException as exc:  # reported to the caller below
            failed.append(exc)

    thread = threading.Thread(target=init, name="smiless-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise BackendError(f"ray cluster at {address}: no answer within {timeout_s:g} s")
    if failed:
        raise BackendError(f"ray cluster at {address}: {failed[0]}") from failed[0]


def capacity_from_ray(nodes: list[dict[str, Any]], free: dict[str, dict[str, float]]) -> Capacity:
    """A Capacity from `ray.nodes()` and the free resources of each node (by node id)."""
    out = []
    for n in nodes:
        if not n.get("Alive"):
            continue
        total, left = n.get("Resources", {}), free.get(n["NodeID"], {})
        out.append(
            Node(
                n["NodeID"],
                n.get("NodeManagerAddress", ""),
                float(total.get("CPU", 0.0)),
                float(total.get("GPU", 0.0)),
                int(total.get("memory", 0.0) // MIB),
                float(left.get("CPU", 0.0)),
                float(left.get("GPU", 0.0)),
                int(left.get("memory", 0.0) // MIB),
                dict(n.get("Labels") or {}),
            )
        )
    return Capacity(tuple(out))


@dataclass
class _Actor:
    handle: Any  # ray.actor.ActorHandle
    node: str
    function: str  # what placement spreads: the function, or the model when none was named
    demand: Demand
    launched: bool = False


class RayBackend(ExitWatch):
    name = "ray"

    def __init__(
        self,
        address: str = "auto",
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 5.0,
        *,
        namespace: str = "smiless",
        connect_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        connect(address, connect_timeout_s)
        self.address = address
        self.namespace = namespace
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.call_timeout_s = connect_timeout_s
        self.actors: dict[str, _Actor] = {}
        self._placing = asyncio.Lock()

    # --- capacity and placement -------------------------------------------------------------
    async def capacity(self) -> Capacity:
        """The cluster's live nodes; free is Ray's view, less what this backend placed and Ray
        may not have counted yet."""
        return await asyncio.to_thread(self._capacity)

    def _capacity(self) -> Capacity:
        import ray
        from ray._private import state  # per-node free resources: the public API sums the cluster

        seen = capacity_from_ray(ray.nodes(), state.available_resources_per_node())
        held: dict[str, list[Demand]] = {}
        for a in self.actors.values():
            held.setdefault(a.node, []).append(a.demand)
        return reserve(seen, held)

    async def _place(self, instance_id: str, config: HardwareConfig, meta: dict[str, Any]) -> _Actor:
        """Pick the node and create the actor there; one decision at a time, so each sees the
        ones before it."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        demand = Demand.of(config)
        key = meta["function"] or meta["model"]
        async with self._placing:
            capacity = await self.capacity()
            placed = [Placement(a.node, a.function) for a in self.actors.values()]
            node = capacity.place(config, key, placed)
            if node is None:
                raise BackendError(f"no ray node has room for {config.name} ({demand}): {capacity.summary()}")
            try:
                handle = (
                    _actor_class()
                    .options(
                        name=PREFIX + instance_id,
                        namespace=self.namespace,
                        lifetime="detached",
                        num_cpus=demand.cpus,
                        num_gpus=demand.gpus,
                        memory=demand.memory_mb * MIB,
                        max_concurrency=ACTOR_THREADS,
                        max_restarts=0,
                        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                    )
                    .remote({**meta, **asdict(demand)})
                )
            except ValueError as exc:  # the name is taken: an instance id used twice
                raise BackendError(f"cannot create the actor of {instance_id}: {exc}") from exc
            actor = _Actor(handle, node, key, demand)
            self.actors[instance_id] = actor
            return actor

    # --- lifecycle --------------------------------------------------------------------------
    async def start(
        self, instance_id: str, model: str, config: HardwareConfig, *, app: str = "", function: str = ""
    ) -> StartedWorker:
        from ray.exceptions import RayError

        check_model(model)
        spawned = time.time()
        meta = {"instance_id": instance_id, "model": model, "config": config.name, "app": app}
        actor = await self._place(instance_id, config, {**meta, "function": function})
        threads = max(1, math.floor(config.cores))
        env = {**WORKER_ENV, "OMP_NUM_THREADS": str(threads)}
        if config.kind is Kind.GPU:
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = f"{config.gpu_share:g}"
        args = ["--model", model, "--config", config.name, "--threads", str(threads)]
        deadline = spawned + self.start_timeout_s
        try:
            try:
                launched = await asyncio.wait_for(
                    actor.handle.launch.remote(args, env), deadline - time.time()
                )
            except TimeoutError:
                waited = f"{self.start_timeout_s:g} s"
                raise BackendError(
                    f"not running on node {actor.node} within {waited} (pending in ray)"
                ) from None
            actor.launched = True
            self.exits[instance_id] = asyncio.create_task(self._wait(actor.handle))
            address = launched["address"]
            await wait_serving(address, deadline, self.exits[instance_id])
            phases = await init_phases(address)
        except (BackendError, RayError, grpc.aio.AioRpcError) as exc:
            tail = await self._log_tail(actor) if actor.launched else ""
            exit_code = self.exit_code(instance_id)
            await self.stop(instance_id)
            raise start_error(
                f"{model} on {config.name}: {exc}" + (f" (log: {tail})" if tail else ""), exit_code
            ) from exc
        ready = time.time()
        phases = {"scheduling": max(0.0, launched["spawned"] - spawned), **phases}
        phases["serve_ready"] = max(0.0, (ready - spawned) - sum(phases.values()))
        return StartedWorker(instance_id, address, spawned, ready, phases)

    async def _wait(self, handle: Any) -> int:
        from ray.exceptions import RayError

        try:
            while (code := await handle.wait.remote(WAIT_POLL_S)) is None:
                pass
            return int(code)
        except RayError:
            return ACTOR_LOST

    async def _log_tail(self, actor: _Actor) -> str:
        from ray.exceptions import RayError

        try:
            return str(await asyncio.wait_for(actor.handle.log_tail.remote(), self.call_timeout_s))
        except (RayError, TimeoutError):
            return ""

    async def stop(self, instance_id: str) -> None:
        """Drain (the worker's SIGTERM), then kill the actor, which frees its resources."""
        import ray
        from ray.exceptions import RayError

        actor = self.actors.pop(instance_id, None)
        task = self.exits.pop(instance_id, None)
        if actor is None:
            return
        if actor.launched:
            with contextlib.suppress(RayError, TimeoutError):
                await asyncio.wait_for(
                    actor.handle.stop.remote(self.stop_timeout_s), self.stop_timeout_s + self.call_timeout_s
                )
        with contextlib.suppress(RayError, ValueError):
            await asyncio.to_thread(ray.kill, actor.handle, no_restart=True)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(i) for i in list(self.actors)), return_exceptions=True)

    async def adopt(self) -> list[AdoptedWorker]:
        """Find this namespace's smiless actors an earlier run left: those whose worker runs are
        adopted (this backend controls them again), the others are killed."""
        import ray
        from ray.exceptions import RayError

        listed = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
        names = [
            a["name"] for a in listed if a["namespace"] == self.namespace and a["name"].startswith(PREFIX)
        ]
        out: list[AdoptedWorker] = []
        for name in names:
            iid = name.removeprefix(PREFIX)
            if iid in self.actors:
                continue
            info: dict[str, Any] = {}
            handle: Any = None
            try:
                handle = await asyncio.to_thread(ray.get_actor, name, namespace=self.namespace)
                info = await asyncio.wait_for(handle.info.remote(), self.call_timeout_s)
            except (RayError, ValueError, TimeoutError):
                pass  # gone meanwhile, or never got running (pending): killed below
            model, config = str(info.get("model", "")), str(info.get("config", ""))
            if info.get("running") and info.get("address"):
                demand = Demand(float(info["cpus"]), float(info["gpus"]), int(info["memory_mb"]))
                key = str(info.get("function") or model)
                self.actors[iid] = _Actor(handle, str(info["node_id"]), key, demand, launched=True)
                self.exits[iid] = asyncio.create_task(self._wait(handle))
                out.append(AdoptedWorker(iid, str(info["address"]), model, config, True))
                continue
            if handle is not None:
                with contextlib.suppress(RayError, ValueError):
                    await asyncio.to_thread(ray.kill, handle, no_restart=True)
            out.append(AdoptedWorker(iid, "", model, config, False))
        return out
