"""DAG execution for one invocation, independent of how a stage is run.

Every function runs as soon as all its parents are done (independent branches run
concurrently). A stage's input is its parent's output, or the parents' outputs
concatenated along the first dimension in edge order (the contract of smiless/zoo.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from smiless.appspec import AppSpec


@dataclass
class StageResult:
    output: np.ndarray
    instance_id: str
    config: str
    start: float  # monotonic seconds
    end: float
    queueing: float
    inference: float
    cold: bool
    batch_size: int = 1


class StageFailed(Exception):
    def __init__(self, function: str, cause: BaseException) -> None:
        super().__init__(f"stage {function}: {cause}")
        self.function = function
        self.cause = cause


StageCall = Callable[[str, np.ndarray], Awaitable[StageResult]]


def join_inputs(outputs: list[np.ndarray]) -> np.ndarray:
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)


async def execute(spec: AppSpec, entry_input: np.ndarray, call: StageCall) -> dict[str, StageResult]:
    """Run the DAG; return every stage's result. Raises StageFailed for the first failure
    (the other stages are cancelled)."""
    tasks: dict[str, asyncio.Task[StageResult]] = {}

    async def run(function: str) -> StageResult:
        parents = spec.parents(function)
        if parents:
            done = [await tasks[p] for p in parents]
            x = join_inputs([r.output for r in done])
        else:
            x = entry_input
        try:
            return await call(function, x)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise StageFailed(function, exc) from exc

    for function in spec.topological_order():
        tasks[function] = asyncio.create_task(run(function))
    try:
        await asyncio.gather(*tasks.values())
    except BaseException:
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        # Report the failure of the earliest stage that failed on its own.
        for t in tasks.values():
            if t.done() and not t.cancelled() and isinstance(t.exception(), StageFailed):
                raise t.exception() from None  # type: ignore[misc]
        raise
    return {f: t.result() for f, t in tasks.items()}
