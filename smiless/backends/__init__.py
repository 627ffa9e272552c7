"""Worker backends: how instances run (local child processes, Docker containers, or Ray
actors on a cluster).

The optimizer's controller and the profiler are the only callers; nothing else starts
workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smiless.backends.base import WorkerBackend
    from smiless.config import Settings


def make_backend(settings: Settings) -> WorkerBackend:
    """The configured worker backend (SMILESS_WORKER_BACKEND)."""
    if settings.worker_backend == "docker":
        from smiless.backends.docker import DockerBackend

        return DockerBackend(
            settings.worker_image,
            settings.worker_start_timeout_s,
            settings.worker_stop_timeout_s,
            network=settings.worker_network,
        )
    if settings.worker_backend == "ray":
        from smiless.backends.ray import RayBackend

        return RayBackend(
            settings.ray_address,
            settings.worker_start_timeout_s,
            settings.worker_stop_timeout_s,
            namespace=settings.ray_namespace,
            connect_timeout_s=settings.ray_connect_timeout_s,
        )
    from smiless.backends.process import ProcessBackend

    return ProcessBackend(settings.host, settings.worker_start_timeout_s, settings.worker_stop_timeout_s)
