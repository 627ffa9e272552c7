"""DAG execution for one invocation, independent of how a stage is run.

Every function runs as soon as all its parents are done (independent branches run
concurrently). A stage's input is its parent's output, or the parents' outputs
concatenated along the first dimension in edge order (the contract of smiless/zoo.py).
Tensors stay in their wire form (`smiless.v1.Tensor`) between stages: a single parent's
output is handed on as it came, only a join decodes and re-encodes.

A chain (every function with at most one parent and one child) runs stage after stage in
the caller's task; only DAGs with branches pay for a task per stage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from smiless import tensors
from smiless.dag import Dag
from smiless.v1 import common_pb2


@dataclass
class StageResult:
    output: common_pb2.Tensor
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


StageCall = Callable[[str, common_pb2.Tensor], Awaitable[StageResult]]


def join_inputs(outputs: list[common_pb2.Tensor]) -> common_pb2.Tensor:
    if len(outputs) == 1:
        return outputs[0]
    return tensors.to_proto(np.concatenate([tensors.from_proto(t) for t in outputs], axis=0))


async def execute(dag: Dag, entry_input: common_pb2.Tensor, call: StageCall) -> dict[str, StageResult]:
    """Run the DAG; return every stage's result. Raises StageFailed for the first failure
    (the other stages are cancelled)."""
    order, parents = dag.functions, dag.parents
    if dag.is_chain:
        results: dict[str, StageResult] = {}
        x = entry_input
        for function in order:
            try:
                r = await call(function, x)
            except Exception as exc:
                raise StageFailed(function, exc) from exc
            results[function] = r
            x = r.output
        return results

    tasks: dict[str, asyncio.Task[StageResult]] = {}

    async def run(function: str) -> StageResult:
        ps = parents[function]
        if ps:
            done = [await tasks[p] for p in ps]
            x = join_inputs([r.output for r in done])
        else:
            x = entry_input
        try:
            return await call(function, x)
        except Exception as exc:
            raise StageFailed(function, exc) from exc

    for function in order:
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
