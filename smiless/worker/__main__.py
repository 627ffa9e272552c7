"""Entry point: `python -m smiless.worker --model NAME --config cpu-1 --port P`.

Timing starts here, before torch is imported, so the runtime-import phase is measured.
"""

from __future__ import annotations

import time

STARTED = time.time()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: str | None) -> None:
    """Started by the process backend (`parent_pid` set): have the kernel SIGTERM this worker
    when the process that started it dies, however it dies (a SIGKILL after a stop that took
    too long included); exit now if it already has. A process worker cannot be adopted by a
    later run, so one that outlived its optimizer would only hold a port, memory and a core.
    Done here rather than between fork and exec in the parent, where a multi-threaded gRPC
    process must not run Python. Linux only."""
    if not parent_pid or sys.platform != "linux":
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent_pid):
        raise SystemExit(0)


def main() -> None:
    from smiless.backends.base import PARENT_PID_ENV

    die_with_parent(os.environ.get(PARENT_PID_ENV))
    parser = argparse.ArgumentParser(prog="smiless-worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", default="cpu-1")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the config's cores)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from smiless import zoo
    from smiless.backends.base import EXIT_BAD_MODEL

    try:
        zoo.resolve(args.model)  # unknown name, unreadable TorchScript file: say so and exit 2
    except zoo.ZooError as exc:
        print(f"smiless-worker: --model: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_MODEL) from None
    spawned = float(os.environ.get("SMILESS_WORKER_SPAWNED_AT", STARTED))
    from smiless.worker.server import run

    try:
        asyncio.run(
            run(args.model, args.config, args.threads, args.host, args.port, args.seed, spawned, STARTED)
        )
    except zoo.ZooError as exc:  # the file was readable but torch cannot load it
        print(f"smiless-worker: --model: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_MODEL) from None
    # Served and drained: skip the interpreter's teardown of torch and transformers (seconds
    # on a loaded machine, which a stop deadline would otherwise turn into a SIGKILL).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
