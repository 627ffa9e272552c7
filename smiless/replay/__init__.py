"""Trace replay: an open-loop load generator that drives apps on a running stack with Azure
trace rows, and the report of the window.

One idea per module; the pure ones (`schedule`, `report`) are checked without a running system:

- `schedule` (pure): trace rows and windows become workloads and send times;
- `driver` (thin async adapter): the open-loop sender and the gateway calls of a replay;
- `report` (pure): every scheduled invocation accounted for, the gateway's figures beside;
- `session`: a replay against a running stack, from the command's options to the report;
- `fidelity`: the measured report against the simulator's run of the same window;
- `plot`: the timeline PNG;
- `demo`: the demo's fixed window and the steps around its replay.

The names below are the package's interface; callers import them from here.
"""

from smiless.replay.driver import (
    CLIENT_GRACE_S,
    GatewayInvoker,
    Invoker,
    cost_report,
    example_requests,
    run_schedule,
    window_status,
)
from smiless.replay.fidelity import (
    COST_TOLERANCE,
    VIOLATION_TOLERANCE,
    Fidelity,
    SimFigures,
    compare_with_sim,
    fidelity,
    measured_profiles,
)
from smiless.replay.plot import plot_timeline
from smiless.replay.report import (
    LATE_THRESHOLD_S,
    NOT_SENT,
    OK,
    SLIP_FRACTION,
    AppReport,
    ClientSummary,
    CostPoint,
    GatewayFigures,
    Lateness,
    Outcome,
    Replayed,
    ReplayReport,
    Result,
    Run,
    after_lead_in,
    figures,
    lateness,
    make_report,
    report_window_end,
    summarize,
)
from smiless.replay.schedule import Send, build_schedule, make_workload, select_row, window_seconds
from smiless.replay.session import (
    ReplayError,
    Watch,
    build_workloads,
    is_spec_file,
    register_specs,
    replay_apps,
    replay_trace,
)
from smiless.sim.workload import Workload

__all__ = [
    "CLIENT_GRACE_S",
    "COST_TOLERANCE",
    "LATE_THRESHOLD_S",
    "NOT_SENT",
    "OK",
    "SLIP_FRACTION",
    "VIOLATION_TOLERANCE",
    "AppReport",
    "ClientSummary",
    "CostPoint",
    "Fidelity",
    "GatewayFigures",
    "GatewayInvoker",
    "Invoker",
    "Lateness",
    "Outcome",
    "ReplayError",
    "ReplayReport",
    "Replayed",
    "Result",
    "Run",
    "Send",
    "SimFigures",
    "Watch",
    "Workload",
    "after_lead_in",
    "build_schedule",
    "build_workloads",
    "compare_with_sim",
    "cost_report",
    "example_requests",
    "fidelity",
    "figures",
    "is_spec_file",
    "lateness",
    "make_report",
    "make_workload",
    "measured_profiles",
    "plot_timeline",
    "register_specs",
    "replay_apps",
    "replay_trace",
    "report_window_end",
    "run_schedule",
    "select_row",
    "summarize",
    "window_seconds",
    "window_status",
]
