"""The timeline plot of a replay: cumulative cost and every invocation's latency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from smiless.replay.report import NOT_SENT, OK, Outcome, ReplayReport


def plot_timeline(
    report: ReplayReport, outcomes: Sequence[Outcome], sla_s: dict[str, float], out: Path
) -> None:
    """Two panels over the replay: each app's cumulative cost (the gateway's cost series) and
    every invocation's end-to-end latency (dots; x: failed, at the client's time to the error)
    against its SLA (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cost, ax_lat) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for a in report.apps:
        if a.gateway is None or not a.gateway.series:
            continue
        pts = sorted(a.gateway.series, key=lambda p: p.offset_s)
        total, xs, ys = 0.0, [pts[0].offset_s], [0.0]
        for k, p in enumerate(pts):
            total += p.cost
            xs.append(pts[k + 1].offset_s if k + 1 < len(pts) else report.window_s)
            ys.append(total)
        ax_cost.plot(xs, ys, marker=".", label=f"{a.app} ({total:.5f})")
    ax_cost.set_ylabel("cumulative cost")
    ax_cost.set_title(f"replay of {report.window_s:.0f} s, {report.slot_seconds:g} s per trace minute")
    ax_cost.grid(alpha=0.3)
    ax_cost.legend(fontsize=8)
    for app, sla in sla_s.items():
        ok = [o for o in outcomes if o.send.app == app and o.latency_s is not None]
        dots = ax_lat.scatter([o.sent_at or 0.0 for o in ok], [o.latency_s for o in ok], s=10, label=app)
        ax_lat.axhline(sla, color=dots.get_facecolor()[0], linestyle="--", alpha=0.5)
        bad = [o for o in outcomes if o.send.app == app and o.status not in (OK, NOT_SENT)]
        if bad:
            ax_lat.scatter(
                [o.sent_at or 0.0 for o in bad],
                [(o.done_at or 0.0) - (o.sent_at or 0.0) for o in bad],
                marker="x",
                color="red",
                s=20,
                label=f"{app} failed",
            )
    ax_lat.set_ylabel("latency (s)")
    ax_lat.set_xlabel("seconds since the replay started")
    ax_lat.grid(alpha=0.3)
    ax_lat.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
