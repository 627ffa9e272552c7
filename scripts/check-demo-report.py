"""Check a `smiless demo --json` report the way a user reads it: every example app replayed,
every scheduled invocation answered or accounted for, the gateway's figures present, a plot.

usage: python scripts/check-demo-report.py REPORT.json PLOT.png   (exit 1 with the reasons)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXPECTED_APPS = {"voice-assistant", "amber-alert", "image-query"}


def problems(doc: dict, plot: Path) -> list[str]:
    out: list[str] = []
    apps = {a["app"]: a for a in doc.get("apps", [])}
    if set(apps) != EXPECTED_APPS:
        out.append(f"apps: {sorted(apps)}, expected {sorted(EXPECTED_APPS)}")
    if doc.get("interrupted"):
        out.append("the replay was interrupted")
    if not doc.get("accounted"):
        out.append("some scheduled invocations are unaccounted for")
    for name, a in apps.items():
        client, gateway = a["client"], a["gateway"]
        if client["sent"] == 0:
            out.append(f"{name}: nothing was sent")
        if gateway is None:
            out.append(f"{name}: no gateway report")
        elif gateway["invocations"] == 0:
            out.append(f"{name}: the gateway recorded no invocation")
    if not plot.is_file() or plot.stat().st_size == 0:
        out.append(f"no plot at {plot}")
    return out


def main() -> int:
    doc = json.loads(Path(sys.argv[1]).read_text())
    found = problems(doc, Path(sys.argv[2]))
    for p in found:
        print(f"demo report: {p}", file=sys.stderr)
    if not found:
        for a in doc["apps"]:
            c, g = a["client"], a["gateway"]
            print(
                f"demo report: {a['app']}: sent {c['sent']}, violation ratio {g['violation_ratio']:.3f}, "
                f"cost {g['cost']:.4f}"
            )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
