"""`smiless`: run the services, manage apps, invoke them, read reports.

The entry point (`smiless.cli.main:app`). The app and the shared helpers live in
`smiless.cli.app`, which imports no subcommand; importing each subcommand module here
registers its commands on the app (the services' commands first, the order of `--help`).
"""

from __future__ import annotations

import smiless.cli.service as service
from smiless.cli import bench, demo, plan, predict, profile, replay, report, sim
from smiless.cli.app import app

__all__ = ["app", "bench", "demo", "plan", "predict", "profile", "replay", "report", "service", "sim"]
