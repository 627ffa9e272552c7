"""Small apps and workloads for the simulator tests."""

from __future__ import annotations

import numpy as np

from smiless.catalogue import Kind
from smiless.dag import Dag
from smiless.policy.profile import FunctionProfile, InferenceModel, InitModel
from smiless.sim import SimApp, Workload


def exact_profile(
    kind: Kind, lam: float, alpha: float, gamma: float, init: float, extra: float = 0.0
) -> FunctionProfile:
    """σ = 0: the planner's μ + 3σ is the init the exact simulator draws."""
    return FunctionProfile(
        "m", kind, InferenceModel(lam, alpha, 0.0, gamma), InitModel.single(init, 0.0), extra
    )


def diamond(sla_s: float = 3.0) -> SimApp:
    """a -> (b, c) -> d, CPU and GPU profiles with exact inits."""
    prof = {
        "a": {
            "cpu": exact_profile(Kind.CPU, 0.3, 1.0, 0.1, 2.0, 0.01),
            "gpu": exact_profile(Kind.GPU, 0.1, 2.0, 0.05, 4.0),
        },
        "b": {
            "cpu": exact_profile(Kind.CPU, 0.2, 1.0, 0.05, 1.5),
            "gpu": exact_profile(Kind.GPU, 0.1, 1.0, 0.05, 3.0),
        },
        "c": {"cpu": exact_profile(Kind.CPU, 0.5, 1.0, 0.08, 2.5, 0.02)},
        "d": {"cpu": exact_profile(Kind.CPU, 0.1, 1.0, 0.1, 1.0)},
    }
    dag = Dag.of(["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    return SimApp("diamond", sla_s, dag, prof, "diamond")


def periodic(every: int, minutes: int, start: int, count: int = 1, slot_s: float = 2.0) -> Workload:
    """`count` invocations every `every` minutes from minute 0; history = the first `start`."""
    c = np.zeros(minutes, dtype=np.int64)
    c[::every] = count
    return Workload(c, start, slot_s)
