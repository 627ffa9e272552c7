"""asyncio helpers the services share."""

from __future__ import annotations

import asyncio
from typing import Any

STOP_TIMEOUT_S = 5.0
"""How long `stop_task` waits for a task to end."""

_RECANCEL_S = 0.05


async def stop_task(task: asyncio.Task[Any] | None, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Cancel `task` and wait until it has ended; False when it had not after `timeout_s`.

    It cancels again until the task ends, because one cancellation can be lost: on Python
    3.11, `asyncio.wait_for` (which redis-py wraps around socket writes) drops a
    cancellation that lands just as its inner call completes. A background loop that loses
    it runs on, and a shutdown awaiting it never ends (a profiler hung on SIGTERM so in CI).
    Whatever the task raised is consumed: it is ending anyway."""
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(_RECANCEL_S, left))
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as never retrieved
    return True
