"""`smiless sim` end to end through the real command line, on a small trace file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def write_trace(path: Path, rows: int = 3, minutes: int = 90, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    header = ["HashFunction", "HashApp", "HashOwner", *(f"minute_{i}" for i in range(1, minutes + 1))]
    lines = [",".join(header)]
    for r in range(rows):
        counts = (rng.uniform(size=minutes) < 0.4) * rng.integers(1, 4, size=minutes)
        lines.append(",".join([f"fn{r}", f"app{r}", "owner", *(str(int(c)) for c in counts)]))
    path.write_text("\n".join(lines) + "\n")


def smiless(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smiless", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_sim_json_reports_every_field_and_the_bound(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    write_trace(trace)
    out = smiless(
        "sim", "--app", "image-query", "--trace", str(trace), "--rows", "fn1", "--history-minutes", "45",
        "--policy", "keepalive-10min,grandslam,lower-bound", "--sla", "3", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    assert [r["policy"] for r in runs] == ["keepalive-10min", "grandslam", "lower-bound"]
    fields = {"app", "sla_s", "policy", "cost", "cost_vs_lower_bound", "violation_ratio", "p99_ms",
              "cold_starts", "invocations", "sim_wall_s"}  # fmt: skip
    for r in runs:
        assert fields <= r.keys()
        assert r["sla_s"] == 3.0 and r["invocations"] > 0
    bound = runs[-1]["cost"]
    assert bound > 0
    for r in runs[:2]:
        assert r["cost_vs_lower_bound"] == r["cost"] / bound


def test_sim_names_the_bad_option(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    write_trace(trace)
    bad = smiless("sim", "--trace", str(trace), "--rows", "fn1", "--policy", "nope")
    assert bad.returncode == 1 and "--policy" in bad.stderr
    missing = smiless("sim", "--trace", str(tmp_path / "none.csv"), "--rows", "fn1")
    assert missing.returncode == 1 and "--trace" in missing.stderr
    warm = smiless("sim", "--trace", str(trace), "--rows", "fn1", "--history-minutes", "45", "--warmup", "-1")
    assert warm.returncode == 1 and "--warmup" in warm.stderr
    bench = smiless("bench", "policies", "--no-matrix", "--warmup", "nan")
    assert bench.returncode == 1 and "--warmup" in bench.stderr
