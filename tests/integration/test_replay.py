"""`smiless replay` against the whole embedded stack (real Redis, gRPC, worker processes):
invariants, not timings. Every scheduled invocation is accounted for, client and gateway
agree on what was sent and what violated the SLA, and the reported cost is the recorded
instance lifetimes times their prices (recomputed here with smiless.accounting)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smiless import accounting
from smiless.protoutil import get_seconds
from smiless.stack import LocalStack
from smiless.store import Store

pytestmark = pytest.mark.e2e  # ~35 s: a 24 s window plus cold starts

# Twelve trace minutes of two rows: bursts (together), idle minutes, a second app at once.
COUNTS = {
    "replay-chain": [2, 0, 3, 1, 0, 4, 1, 2, 0, 1, 3, 1],
    "replay-single": [0, 1, 0, 0, 2, 0, 0, 1, 1, 0, 0, 2],
}
SPECS = {
    "replay-chain": "name: replay-chain\nsla: 2s\nfunctions:\n"
    "  - {name: a, model: tiny-mlp}\n  - {name: b, model: tiny-mlp}\nedges:\n  - [a, b]\n",
    "replay-single": "name: replay-single\nsla: 2s\nfunctions:\n  - {name: m, model: tiny-mlp}\n",
}


def write_trace(path: Path) -> None:
    minutes = len(next(iter(COUNTS.values())))
    header = ["HashFunction", "HashApp", "HashOwner", *(f"minute_{i + 1}" for i in range(minutes))]
    lines = [",".join(header)]
    for i, counts in enumerate(COUNTS.values()):
        lines.append(",".join([f"row{i}", f"app{i}", "owner", *map(str, counts)]))
    path.write_text("\n".join(lines) + "\n")


async def recorded_cost(redis_url: str, start: float, end: float) -> dict[str, float]:
    store = Store(redis_url)
    try:
        lives = [
            accounting.Lifetime(
                i.id,
                i.app,
                i.function,
                i.config,
                i.price_per_hour,
                get_seconds(i.started_at),
                get_seconds(i.stopped_at) if i.HasField("stopped_at") else None,
            )
            for i in await store.lifetimes()
        ]
    finally:
        await store.close()
    now = time.time()
    return {app: accounting.total_cost([x for x in lives if x.app == app], start, end, now) for app in COUNTS}


def test_replay_accounts_for_every_invocation_and_its_cost(stack: LocalStack, tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    write_trace(trace)
    args = [sys.executable, "-m", "smiless", "replay", "--trace", str(trace), "--json"]
    args += ["--gateway", stack.addresses["gateway"], "--slot-seconds", "2"]
    for i, (name, spec) in enumerate(SPECS.items()):
        (tmp_path / f"{name}.yaml").write_text(spec)
        args += ["--app", str(tmp_path / f"{name}.yaml"), "--row", f"row{i}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=stack.env())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert report["interrupted"] is False
    assert report["accounted"] is True
    assert report["window_s"] >= 24.0  # 12 trace minutes at 2 s, plus the last answers
    by_app = {a["app"]: a for a in report["apps"]}
    assert set(by_app) == set(COUNTS)
    for name, counts in COUNTS.items():
        client, gateway = by_app[name]["client"], by_app[name]["gateway"]
        assert client["scheduled"] == sum(counts)
        assert client["not_sent"] == 0
        assert client["sent"] == client["ok"] + sum(client["failed"].values()) == sum(counts)
        # The gateway recorded exactly what the client sent, and the same violations.
        assert gateway["invocations"] == client["sent"]
        assert gateway["sla_violations"] == client["sla_violations"]
        assert gateway["instances_started"] >= len(SPECS[name].split("model:")) - 1
        assert gateway["cost"] > 0
        assert gateway["cost_per_1000"] == pytest.approx(gateway["cost"] / gateway["invocations"] * 1000)

    recomputed = asyncio.run(recorded_cost(str(stack.redis_url), report["started_at"], report["ended_at"]))
    for name in COUNTS:
        assert by_app[name]["gateway"]["cost"] == pytest.approx(recomputed[name], rel=1e-9, abs=1e-12)
