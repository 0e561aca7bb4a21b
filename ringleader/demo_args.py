"""The options of `ringleader demo` (its handler is `ringleader.demo.run`, loaded to run)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ringleader.lazy import lazy


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a real dispatch on the embedded Tansu + Valkey, killing a worker mid-run",
    )
    p.add_argument("--workers", type=_at_least(2), default=3, help="worker processes (>= 2)")
    p.add_argument("--tasks", type=_at_least(1), default=900, help="tasks to submit")
    p.add_argument("--task-seconds", type=float, default=0.1, help="how long each task works")
    p.add_argument("--partitions", type=_at_least(1), default=6)
    p.add_argument("--concurrency", type=_at_least(1), default=2, help="handlers per worker")
    p.add_argument("--session-ms", type=int, default=6000, help="group session timeout")
    p.add_argument("--log-dir", type=Path, default=None, help="keep the workers' logs here")
    p.set_defaults(func=lazy("ringleader.demo:run"))


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:  # argparse names it in "invalid parse value: 'x'"
        n = int(text)
        if n < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {n}")
        return n

    return parse
