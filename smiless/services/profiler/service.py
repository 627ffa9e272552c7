"""Profiler service: measures models through a worker backend, fits their init and
inference models, and stores versioned profiles in Redis.

One profile run per model at a time (a Redis lock; a second request is refused with
ABORTED). Every finished step is saved, so a run that is interrupted (client gone,
service restarted) resumes where it stopped when the same request comes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import statistics
import uuid
from collections.abc import AsyncIterator

import grpc

from smiless import logs, profiles, zoo
from smiless.aio import stop_task
from smiless.backends import make_backend
from smiless.backends.base import BackendError, WorkerBackend
from smiless.catalogue import HardwareConfig, Kind, load_catalogue, mark_runnable
from smiless.config import Settings
from smiless.policy.fitting import FitError, LatencySample, drift, fit_inference, fit_init, merge_points
from smiless.protoutil import get_seconds, set_seconds
from smiless.server import RpcError, rpc
from smiless.services.profiler import measure
from smiless.store import Store
from smiless.v1 import common_pb2, profiler_pb2, profiler_pb2_grpc

log = logging.getLogger("smiless.profiler")
_KINDS = {common_pb2.HARDWARE_KIND_CPU: "cpu", common_pb2.HARDWARE_KIND_GPU: "gpu"}
DEFAULT_BATCHES = (1, 2, 4, 8, 16)
LOCK_TTL_S = 120.0
REFIT_WINDOW = 200  # most recent gateway samples per (model, config) a refit looks at


def _check_model(model: str) -> zoo.ModelSpec:
    if not model:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "model: required")
    spec = zoo.get(model)
    if spec is None:
        raise RpcError(grpc.StatusCode.NOT_FOUND, f"model: unknown model {model!r}")
    return spec


class ProfilerService(profiler_pb2_grpc.ProfilerServicer):
    name = "profiler"

    def __init__(self, settings: Settings, store: Store, backend: WorkerBackend | None = None) -> None:
        self.settings = settings
        self.store = store
        self.catalogue = mark_runnable(
            load_catalogue(settings.catalogue), os.cpu_count() or 1, gpu_available=False
        )
        self.backend: WorkerBackend = backend or make_backend(settings)
        self._refitter: asyncio.Task[None] | None = None

    def add_to_server(self, server: grpc.aio.Server) -> list[str]:
        profiler_pb2_grpc.add_ProfilerServicer_to_server(self, server)
        return ["smiless.v1.Profiler"]

    async def start(self) -> None:
        self._refitter = asyncio.create_task(self._refit_loop())

    async def stop(self) -> None:
        await stop_task(self._refitter)
        await self.backend.close()

    # --- online refit --------------------------------------------------------------------
    async def _refit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refit_interval_s)
            for model in zoo.MODELS:
                try:
                    await self.refit(model)
                except Exception:  # a bad sample must not stop the loop; next round retries
                    log.exception("online refit of %s failed", model)

    async def refit(self, model: str) -> list[profiler_pb2.Profile]:
        """Refit `model` where the warm latencies the gateway recorded drift from its profile
        by more than `refit_drift`; returns the profiles it stored."""
        stored = await self.store.get_profiles(model)
        refreshed = []
        for kind_name, profile in stored.items():
            kind = profiles.KIND_FROM_PROTO[profile.kind]
            recent: list[LatencySample] = []
            for cfg in (c for c in self.catalogue.values() if c.kind is kind):
                samples = await self.store.stage_latencies(model, cfg.name, REFIT_WINDOW)
                by_batch: dict[int, list[float]] = {}
                for s in samples:
                    by_batch.setdefault(s.batch, []).append(s.seconds)
                recent += [
                    LatencySample(b, cfg.resource, statistics.median(v))
                    for b, v in by_batch.items()
                    if len(v) >= self.settings.refit_min_samples
                ]
            current = profiles.from_proto(profile).inference
            seen = drift(current, recent)
            if not recent or seen <= self.settings.refit_drift:
                continue
            measured = [
                LatencySample(pt.batch_size, self.catalogue[pt.config].resource, get_seconds(pt.median))
                for pt in profile.points
                if pt.config in self.catalogue
            ]
            try:
                fit = fit_inference(merge_points(current, measured, recent))
            except FitError:
                continue
            new = profiler_pb2.Profile()
            new.CopyFrom(profile)
            new.version = profile.version + 1
            new.inference.CopyFrom(profiles.inference_to_proto(fit.model, fit.mape))
            new.created_at.GetCurrentTime()
            inf = profile.inference
            before = f"T = {inf.lam:.4g}·B·({inf.alpha:.3f}/r + {inf.beta:.3f}) + {inf.gamma:.4g}"
            new.notes.append(
                f"online refit: observed latencies drifted {seen:.0%} from {before} "
                f"(version {profile.version}); refitted on {len(recent)} recent points"
            )
            await self.store.put_profile(new, kind_name)
            logs.event(
                log,
                "profile refitted online",
                model=model,
                kind=kind_name,
                drift=round(seen, 3),
                version=new.version,
            )
            refreshed.append(new)
        return refreshed

    def _configs(self, request: profiler_pb2.ProfileFunctionRequest) -> dict[str, HardwareConfig]:
        names = list(request.configs) or [
            c.name for c in self.catalogue.values() if c.runnable and c.kind is Kind.CPU
        ]
        out: dict[str, HardwareConfig] = {}
        for i, name in enumerate(names):
            cfg = self.catalogue.get(name)
            if cfg is None:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"configs[{i}]: unknown hardware config {name!r}"
                )
            if not cfg.runnable:
                need = f"{cfg.gpu_share:g}% of a GPU" if cfg.kind is Kind.GPU else f"{cfg.cores:g} cores"
                raise RpcError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"configs[{i}]: {name} cannot run here "
                    f"(needs {need}; host has {os.cpu_count()} cores, no GPU)",
                )
            out[name] = cfg
        return out

    def _batches(self, request: profiler_pb2.ProfileFunctionRequest, spec: zoo.ModelSpec) -> list[int]:
        if not request.batch_sizes:
            return [b for b in DEFAULT_BATCHES if b <= spec.max_batch]
        for i, b in enumerate(request.batch_sizes):
            if not 1 <= b <= spec.max_batch:
                raise RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"batch_sizes[{i}]: {b} is outside 1..{spec.max_batch} for {spec.name}",
                )
        return sorted(set(request.batch_sizes))

    async def ProfileFunction(
        self, request: profiler_pb2.ProfileFunctionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[profiler_pb2.ProfileFunctionResponse]:
        try:
            spec = _check_model(request.model)
            configs = self._configs(request)
            batches = self._batches(request, spec)
            cold = request.cold_starts or 10
            if not 2 <= cold <= 200:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"cold_starts: {cold} is outside 2..200")
            owner = uuid.uuid4().hex  # one per run: a second request is refused, even here
            if not await self.store.lock_profile(spec.name, owner, LOCK_TTL_S):
                raise RpcError(
                    grpc.StatusCode.ABORTED, f"model: a profile run of {spec.name!r} is already running"
                )
        except RpcError as exc:
            await context.abort(exc.code, exc.message)
            return
        keeper = asyncio.create_task(self._keep_lock(spec.name, owner))
        try:
            async for msg in self._profile(spec, configs, batches, cold, request.force):
                yield msg
        except RpcError as exc:
            await context.abort(exc.code, exc.message)
        except BackendError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"worker: {exc}")
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            log.exception("profile run of %s failed", spec.name)
            await context.abort(grpc.StatusCode.INTERNAL, f"profile run failed: {type(exc).__name__}: {exc}")
        finally:
            await stop_task(keeper)
            with contextlib.suppress(Exception):
                await self.store.unlock_profile(spec.name, owner)

    async def _keep_lock(self, model: str, owner: str) -> None:
        while True:
            await asyncio.sleep(LOCK_TTL_S / 3)
            await self.store.lock_profile(model, owner, LOCK_TTL_S)

    async def _profile(
        self,
        spec: zoo.ModelSpec,
        configs: dict[str, HardwareConfig],
        batches: list[int],
        cold: int,
        force: bool,
    ) -> AsyncIterator[profiler_pb2.ProfileFunctionResponse]:
        params = json.dumps({"configs": sorted(configs), "batches": batches, "cold_starts": cold})
        done = await self.store.profile_run(spec.name)
        if done.get("__params__") != params:
            await self.store.reset_profile_run(spec.name, params)
            done = {}
        steps = measure.plan_steps(list(configs), cold, batches)
        resumed = sum(1 for s in steps if s.key in done)
        logs.event(log, "profile run", model=spec.name, steps=len(steps), resumed=resumed)
        yield profiler_pb2.ProfileFunctionResponse(
            done=resumed, total=len(steps), step="resumed" if resumed else "start"
        )

        async def save(step: measure.Step, result: str) -> None:
            await self.store.save_profile_step(spec.name, step.key, result)

        async for finished, step in measure.run(self.backend, spec.name, configs, steps, done, save):
            yield profiler_pb2.ProfileFunctionResponse(done=finished, total=len(steps), step=step.describe())
        results = await self.store.profile_run(spec.name)
        stored = []
        for kind in sorted({c.kind for c in configs.values()}, key=lambda k: k.value):
            stored.append(await self._fit_and_store(spec, kind, configs, steps, results, force))
        await self.store.clear_profile_run(spec.name)
        yield profiler_pb2.ProfileFunctionResponse(
            done=len(steps), total=len(steps), step="stored", profiles=stored
        )

    async def _fit_and_store(
        self,
        spec: zoo.ModelSpec,
        kind: Kind,
        configs: dict[str, HardwareConfig],
        steps: list[measure.Step],
        results: dict[str, str],
        force: bool,
    ) -> profiler_pb2.Profile:
        mine = [s for s in steps if configs[s.config].kind is kind]
        colds = [json.loads(results[s.key]) for s in mine if s.kind == "cold"]
        warms = [(s, json.loads(results[s.key])) for s in mine if s.kind == "warm"]
        samples = [LatencySample(s.index, configs[s.config].resource, r["median"]) for s, r in warms]
        try:
            init = fit_init(colds)
            fit = fit_inference(samples)
        except FitError as exc:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, f"fit: {exc}") from exc
        threshold = self.settings.profile_mape_threshold
        if fit.mape > threshold and not force:
            raise RpcError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"fit: held-out MAPE {fit.mape:.1%} exceeds {threshold:.0%}; the measurements are kept, "
                "send the same request with force to store it anyway",
            )
        old = await self.store.get_profiles(spec.name)
        version = old[kind.value].version + 1 if kind.value in old else 1
        notes = list(fit.notes)
        if len({c for c in configs.values() if c.kind is kind}) > 1:
            notes.append("init phases pooled over the configs measured")
        if fit.mape > threshold:
            notes.append(f"stored with force: held-out MAPE {fit.mape:.1%} exceeds {threshold:.0%}")
        profile = profiler_pb2.Profile(
            model=spec.name,
            kind=profiles.KIND_TO_PROTO[kind],
            configs=sorted(c.name for c in configs.values() if c.kind is kind),
            init_phases=profiles.init_to_proto(init),
            inference=profiles.inference_to_proto(fit.model, fit.mape),
            version=version,
            notes=notes,
        )
        profile.created_at.GetCurrentTime()
        for s, r in warms:
            point = profile.points.add(config=s.config, batch_size=s.index, repetitions=int(r["reps"]))
            for field in ("median", "p10", "p90"):
                set_seconds(getattr(point, field), r[field])
        await self.store.put_profile(profile, kind.value)
        logs.event(
            log, "profile stored", model=spec.name, kind=kind.value, version=version, mape=round(fit.mape, 4)
        )
        return profile

    @rpc
    async def GetProfile(
        self, request: profiler_pb2.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> profiler_pb2.GetProfileResponse:
        _check_model(request.model)
        if request.kind and request.kind not in _KINDS:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"kind: unknown hardware kind {request.kind}")
        found = await self.store.get_profiles(request.model)
        if request.kind:
            found = {k: v for k, v in found.items() if k == _KINDS[request.kind]}
        if not found:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"model: no profile stored for {request.model!r}")
        return profiler_pb2.GetProfileResponse(profiles=[found[k] for k in sorted(found)])
