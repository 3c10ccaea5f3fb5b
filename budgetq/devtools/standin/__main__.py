"""The stand-in's command line: ``python -m budgetq.devtools.standin --port 8765 [--faults JSON|@file]``."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence

from budgetq.devtools.standin.batches import BatchBehaviour
from budgetq.devtools.standin.config import StandInConfig
from budgetq.devtools.standin.faults import FaultPlan
from budgetq.devtools.standin.limits import RateLimits
from budgetq.devtools.standin.mapping import JSONDict
from budgetq.devtools.standin.server import StandIn


def _json_arg(value: str) -> JSONDict:
    text = open(value[1:], encoding="utf-8").read() if value.startswith("@") else value  # noqa: SIM115
    data = json.loads(text)
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; print the URL it listens on first."""
    parser = argparse.ArgumentParser(
        prog="python -m budgetq.devtools.standin",
        description="A local stand-in for the Messages API subset budgetq uses.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token-ratio", type=float, default=1.3)
    parser.add_argument("--context-window", type=int, default=200_000)
    parser.add_argument("--min-cacheable-tokens", type=int, default=1024)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", type=_json_arg, default={}, help="a FaultPlan as JSON, or @file")
    parser.add_argument("--limits", type=_json_arg, default={}, help="RateLimits as JSON, or @file")
    parser.add_argument(
        "--batches", type=_json_arg, default={}, help="Message Batches BatchBehaviour as JSON, or @file"
    )
    args = parser.parse_args(argv)
    config = StandInConfig(
        host=args.host,
        port=args.port,
        token_ratio=args.token_ratio,
        context_window=args.context_window,
        min_cacheable_tokens=args.min_cacheable_tokens,
        latency_s=args.latency,
        seed=args.seed,
        faults=FaultPlan.from_dict(args.faults),
        limits=RateLimits.from_dict(args.limits),
        batches=BatchBehaviour.from_dict(args.batches),
    )
    standin = StandIn(config)
    print(f"standin listening on {standin.start()}", flush=True)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        pass
    standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
