"""Worker backends: how instances run (local child processes, or Docker containers).

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
    from smiless.backends.process import ProcessBackend

    return ProcessBackend(settings.host, settings.worker_start_timeout_s, settings.worker_stop_timeout_s)
