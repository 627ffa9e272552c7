from __future__ import annotations

import itertools

import pytest

from tests.waiting import wait_until, wait_until_sync


def test_sync_wait_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_until_sync(lambda: next(calls) >= 3 and "ready", 5.0, "the third call", 0.0) == "ready"


def test_sync_wait_names_what_never_came() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the moon \(last: 0\)"):
        wait_until_sync(lambda: 0, 0.05, "the moon", 0.01)


async def test_async_wait_returns_the_first_truthy_value() -> None:
    calls = itertools.count()

    async def third() -> int:
        return n if (n := next(calls)) >= 3 else 0

    assert await wait_until(third, 5.0, "the third call", 0.0) == 3


async def test_async_wait_names_what_never_came() -> None:
    async def never() -> list[str]:
        return []

    with pytest.raises(AssertionError, match=r"waiting for a plan \(last: \[\]\)"):
        await wait_until(never, 0.05, "a plan", 0.01)
