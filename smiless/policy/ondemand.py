"""The on-demand start: what the gateway's `EnsureInstance` starts when requests find no
instance free to take them, the same rule live (the optimizer) and simulated."""

from __future__ import annotations

from collections.abc import Callable


def on_demand_count(queued: int, coming: int, batch: int) -> int:
    """Instances to start for `queued` requests when the busy and starting instances take
    `coming` of them in their next round (one batch each) and a new one takes `batch`:
    ⌈(queued - coming) / batch⌉, as a concurrency-based autoscaler (Knative's) does."""
    need = queued - coming
    if need <= 0:
        return 0
    return -(-need // (batch if batch > 1 else 1))


def on_demand_shape(
    instance_config: str, config: str, batch: int, runnable: Callable[[str], bool] | None = None
) -> tuple[str, int] | None:
    """(config, batch) of an on-demand start for a planned function: the plan's instance
    config and batch; its config serving one at a time where `runnable` rules the instance
    config out; None where neither can run here."""
    shaped = instance_config or config
    alone = batch if shaped == config else 1
    for name, b in ((shaped, batch), (config, alone)):
        if runnable is None or runnable(name):
            return name, b if b > 1 else 1
    return None
