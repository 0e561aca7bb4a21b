"""The options of `ringleader chaos list|run` (handlers in `ringleader.chaos.cli`, loaded to run).

`--rate` and `--drain-timeout` default to `chaos.runner.Plan`'s fields; that module imports
the whole runtime, so the values are repeated here and tests/test_cli_startup.py holds the
two together.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ringleader.lazy import lazy

FAULTS = ("drop-completions",)
RATE = 20.0  # Plan().rate: tasks submitted per second
DRAIN_TIMEOUT = 240.0  # Plan().drain_timeout


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("chaos", help="inject faults into a real group of workers, check invariants")
    csub = p.add_subparsers(dest="chaos_command", required=True)
    ls = csub.add_parser("list", help="name the scenarios")
    ls.set_defaults(func=lazy("ringleader.chaos.cli:cmd_list"))
    r = csub.add_parser("run", help="run scenarios and print one report row each")
    r.add_argument("scenarios", nargs="*", help="names from `chaos list` (default: all)")
    r.add_argument("--backend", choices=("local", "compose"), default="local")
    r.add_argument("--json", action="store_true", help="one JSON object per scenario")
    r.add_argument("--dir", type=Path, default=None, help="local: keep stacks and logs here")
    r.add_argument(
        "--broker", choices=("kafka", "tansu"), default="kafka",
        help="local: Apache Kafka (every scenario) or Tansu (those that apply to it)",
    )  # fmt: skip
    r.add_argument("--rate", type=float, default=RATE, help="tasks submitted per second")
    r.add_argument(
        "--drain-timeout", type=float, default=DRAIN_TIMEOUT,
        help="seconds to wait for every accepted task after the load stops",
    )  # fmt: skip
    r.add_argument(
        "--fault", choices=FAULTS, default=None,
        help="run workers of a deliberately broken build (proves the suite catches it)",
    )  # fmt: skip
    r.set_defaults(func=lazy("ringleader.chaos.cli:cmd_run"))
