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


def main() -> None:
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
