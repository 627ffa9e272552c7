"""The Worker gRPC service: load one model, time the init phases, serve batched Infer."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Protocol

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from smiless import tensors, zoo
from smiless.v1 import common_pb2, worker_pb2, worker_pb2_grpc

MAX_MESSAGE = 64 * 1024 * 1024


class ZooNet(Protocol):
    """What smiless/worker/models.py builds: one forward pass over a batch."""

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]: ...


def _phase(name: str, seconds: float) -> common_pb2.InitPhase:
    p = common_pb2.InitPhase(name=name)
    p.duration.FromNanoseconds(max(0, round(seconds * 1e9)))
    return p


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(
        self,
        spec: zoo.ModelSpec,
        config: str,
        model: ZooNet,
        threads: int,
        phases: list[common_pb2.InitPhase],
    ) -> None:
        self.spec = spec
        self.config = config
        self.model = model
        self.threads = threads
        self.phases = phases
        self.lock = asyncio.Lock()
        self.served = 0
        self.in_flight = 0
        self.idle_since = time.time()

    def _forward(self, batch: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
        import torch

        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.run(batch)
        return out, time.perf_counter() - t0

    async def Infer(
        self, request: worker_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.InferResponse:
        n = len(request.inputs)
        if n == 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "inputs: the batch is empty")
        if n > self.spec.max_batch:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"inputs: batch of {n} exceeds max_batch {self.spec.max_batch}",
            )
        batch: list[np.ndarray] = []
        for i, t in enumerate(request.inputs):
            try:
                array = tensors.from_proto(t)
            except tensors.TensorError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"inputs[{i}]: {exc}")
            why = self.spec.input.check(array)
            if why:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"inputs[{i}]: {why} ({self.spec.name})"
                )
            batch.append(array)
        self.in_flight += 1
        try:
            async with self.lock:
                outputs, seconds = await asyncio.to_thread(self._forward, batch)
        except Exception as exc:  # a fault of the model (e.g. a user's module), not of the input
            await context.abort(grpc.StatusCode.INTERNAL, f"model: {self.spec.name} failed: {exc}")
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle_since = time.time()
        self.served += n
        resp = worker_pb2.InferResponse(outputs=[tensors.to_proto(o) for o in outputs])
        resp.inference_time.FromNanoseconds(round(seconds * 1e9))
        return resp

    async def Describe(
        self, request: worker_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.DescribeResponse:
        resp = worker_pb2.DescribeResponse(
            model=self.spec.name,
            config=self.config,
            ready=True,
            init_phases=self.phases,
            max_batch=self.spec.max_batch,
            input_dtype=tensors.dtype_code(self.spec.input.dtype),
            input_shape=list(self.spec.input.shape),
            intra_op_threads=self.threads,
            served=self.served,
            in_flight=self.in_flight,
        )
        if self.in_flight == 0:
            resp.idle_since.FromNanoseconds(round(self.idle_since * 1e9))
        return resp


async def run(
    model_name: str,
    config: str,
    threads: int,
    host: str,
    port: int,
    seed: int,
    spawned: float,
    started: float,
) -> None:
    """Load the model (timing each phase), then serve until SIGTERM."""
    spec = zoo.resolve(model_name)
    import torch

    torch.set_num_threads(max(1, threads))
    from smiless.worker import models

    models.import_runtime(model_name)  # torch and the model's transformers modules
    imported = time.time()
    model: ZooNet = models.build(model_name, seed)
    built = time.time()
    with torch.inference_mode():
        model.run([spec.example_input()])
    warmed = time.time()
    phases = [
        _phase("process_start", started - spawned),
        _phase("runtime_import", imported - started),
        _phase("model_load", built - imported),
        _phase("warmup", warmed - built),
    ]
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
    )
    worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(spec, config, model, threads, phases), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        ["smiless.v1.Worker", "grpc.health.v1.Health", reflection.SERVICE_NAME], server
    )
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await health.set("smiless.v1.Worker", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health.enter_graceful_shutdown()
    await server.stop(5)
