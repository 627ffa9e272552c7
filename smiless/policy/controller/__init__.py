"""The controller's timing: which instances to start and stop now, given a plan.

Pure: the optimizer service and the simulator both build a `ControllerContext` and carry out
the `Decision` that `decide` returns; nothing here sleeps, reads a clock or talks to a
backend. The rules are the steps in `rules.RULES`; why each is as it is, with the figures
that chose them: docs/benchmarks/controller.md.
"""

from smiless.policy.controller.context import (
    DEFAULT_MISS_GRACE_S,
    ControllerContext,
    Decision,
    InstanceView,
    StartInstance,
    StopInstance,
)
from smiless.policy.controller.hysteresis import CONFIG_PRICE_HYSTERESIS
from smiless.policy.controller.rules import decide
from smiless.policy.controller.window import WarmWindow, warm_window

__all__ = [
    "CONFIG_PRICE_HYSTERESIS",
    "DEFAULT_MISS_GRACE_S",
    "ControllerContext",
    "Decision",
    "InstanceView",
    "StartInstance",
    "StopInstance",
    "WarmWindow",
    "decide",
    "warm_window",
]
