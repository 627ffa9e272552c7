"""The discrete-event simulator: the same planner and controller as the services, on traces
far larger than one machine can replay, against baselines and a clairvoyant lower bound.
Pure: no I/O, no clock but its own (wall time is measured only to report speed)."""

from smiless.sim.engine import AppResult, Breakdown, SimResult, simulate
from smiless.sim.lowerbound import lower_bound
from smiless.sim.model import REFERENCE_APPS, Noise, SimApp, app_from_spec, load_app
from smiless.sim.policies import LOWER_BOUND, POLICIES, POLICY_NAMES, make_policy
from smiless.sim.policy import Policy, PolicyContext
from smiless.sim.workload import DEFAULT_SLOT_S, Workload, select_rows, synthetic_counts

__all__ = [
    "DEFAULT_SLOT_S",
    "LOWER_BOUND",
    "POLICIES",
    "POLICY_NAMES",
    "REFERENCE_APPS",
    "AppResult",
    "Breakdown",
    "Noise",
    "Policy",
    "PolicyContext",
    "SimApp",
    "SimResult",
    "Workload",
    "app_from_spec",
    "load_app",
    "lower_bound",
    "make_policy",
    "select_rows",
    "simulate",
    "synthetic_counts",
]
