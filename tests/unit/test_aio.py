"""`stop_task` ends a task even when one cancellation is lost.

The loss itself (Python 3.11's `asyncio.wait_for` dropping a cancellation that lands as its
inner call completes) is a race that cannot be provoked on demand, so these tests use a
stand-in: a fake task that swallows its first cancellation, as such a loop does."""

from __future__ import annotations

import asyncio
import contextlib

from smiless.aio import stop_task


async def _loop_that_loses_one_cancellation(ticks: list[int]) -> None:
    lost = False
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if lost:
                raise
            lost = True  # the fake: this one is dropped, as wait_for can drop it
        ticks.append(1)


def test_a_task_that_loses_a_cancellation_is_still_stopped() -> None:
    async def main() -> tuple[bool, bool, bool]:
        ticks: list[int] = []
        # what the services did before: one cancel, then wait; the task runs on
        plain = asyncio.create_task(_loop_that_loses_one_cancellation(ticks))
        await asyncio.sleep(0.02)
        plain.cancel()
        done, _ = await asyncio.wait({plain}, timeout=0.3)
        ran_on = not done
        stopped = await stop_task(plain, timeout_s=2.0)
        return ran_on, stopped, plain.cancelled()

    ran_on, stopped, cancelled = asyncio.run(main())
    assert ran_on, "the stand-in must lose the first cancellation, or this test shows nothing"
    assert stopped and cancelled


def test_a_task_that_will_not_end_is_given_up_on_and_a_finished_one_is_fine() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():  # a fake that ignores every cancellation until released
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    async def failed() -> None:
        raise RuntimeError("boom")

    async def main() -> tuple[bool, bool]:
        forever = asyncio.create_task(stubborn())
        await asyncio.sleep(0.02)  # it is running its loop
        gave_up = not await stop_task(forever, timeout_s=0.2)
        released.set()
        await asyncio.wait({forever})
        broken = asyncio.create_task(failed())
        await asyncio.sleep(0)
        ended = await stop_task(broken) and await stop_task(None)
        return gave_up, ended

    gave_up, ended = asyncio.run(main())
    assert gave_up and ended
