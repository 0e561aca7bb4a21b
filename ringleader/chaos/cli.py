"""`ringleader chaos list` and `ringleader chaos run [SCENARIO ...]`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from ringleader.chaos.backends.base import Backend, BackendError
from ringleader.chaos.report import Report
from ringleader.chaos.runner import Plan, ScenarioError
from ringleader.chaos.scenarios import SCENARIOS, by_name, run

COLUMNS = ("scenario", "tasks", "refused", "lost", "dup_exec", "dup_records", "overlaps",
           "generation_s", "failover_s", "ok")  # fmt: skip
FAULTS = ("drop-completions",)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("chaos", help="inject faults into a real group of workers, check invariants")
    csub = p.add_subparsers(dest="chaos_command", required=True)
    ls = csub.add_parser("list", help="name the scenarios")
    ls.set_defaults(func=cmd_list)
    r = csub.add_parser("run", help="run scenarios and print one report row each")
    r.add_argument("scenarios", nargs="*", help="names from `chaos list` (default: all)")
    r.add_argument("--backend", choices=("local", "compose"), default="local")
    r.add_argument("--json", action="store_true", help="one JSON object per scenario")
    r.add_argument("--dir", type=Path, default=None, help="local: keep stacks and logs here")
    r.add_argument(
        "--broker", choices=("kafka", "tansu"), default="kafka",
        help="local: Apache Kafka (every scenario) or Tansu (those that apply to it)",
    )  # fmt: skip
    r.add_argument("--rate", type=float, default=Plan().rate, help="tasks submitted per second")
    r.add_argument(
        "--drain-timeout", type=float, default=Plan().drain_timeout,
        help="seconds to wait for every accepted task after the load stops",
    )  # fmt: skip
    r.add_argument(
        "--fault", choices=FAULTS, default=None,
        help="run workers of a deliberately broken build (proves the suite catches it)",
    )  # fmt: skip
    r.set_defaults(func=cmd_run)


def cmd_list(args: argparse.Namespace) -> int:
    for s in SCENARIOS:
        where = f"  ({s.nodes} Kafka nodes)" if s.nodes > 1 else ""
        print(f"{s.name:<20} {s.summary}{where}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        chosen = by_name(list(args.scenarios))
    except KeyError as e:
        print(f"chaos: {e.args[0]}", file=sys.stderr)
        return 2
    chosen.sort(key=lambda s: s.nodes)  # one cluster size after the other: fewer restarts
    plan = Plan(rate=args.rate, drain_timeout=args.drain_timeout)
    env = {"RINGLEADER_CHAOS_FAULT": args.fault} if args.fault else {}
    reports: list[Report] = []
    with ExitStack() as stack:
        try:
            backend = _backend(args, stack)
        except BackendError as e:
            print(f"chaos: the {args.backend} backend did not start: {e}", file=sys.stderr)
            return 2
        if not args.json:
            print(_row(COLUMNS))
        for s in chosen:
            if args.backend == "local" and args.broker == "tansu" and not s.tansu:
                _note(f"{s.name}: skipped on Tansu (needs Apache Kafka)", args.json)
                continue
            try:
                rep = run(s, backend, plan, env)
            except (ScenarioError, BackendError) as e:
                rep = _failed(s.name, str(e))
            reports.append(rep)
            _show(rep, args.json)
    return 0 if all(r.ok for r in reports) else 1


def _backend(args: argparse.Namespace, stack: ExitStack) -> Backend:
    if args.backend == "compose":
        from ringleader.chaos.backends.compose import ComposeBackend

        compose = ComposeBackend.from_env()
        stack.callback(compose.close)
        return compose
    from ringleader.chaos.backends.local import LocalBackend

    root = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rl-chaos-")))
    local = LocalBackend(root, broker=args.broker)
    stack.callback(local.close)
    return local


def _note(text: str, as_json: bool) -> None:
    # Keep stdout one JSON object per line under --json.
    print(text, file=sys.stderr if as_json else sys.stdout, flush=True)


def _failed(name: str, why: str) -> Report:
    return Report(name, 0, 0, 0, 0, 0, None, None, False, (f"run failed: {why}",))


def _show(rep: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rep.to_json()), flush=True)
        return
    d = rep.to_json()
    print(_row(tuple("-" if d[c] is None else str(d[c]).lower() for c in COLUMNS)), flush=True)
    for why in rep.broken:
        print(f"    broken: {why}", flush=True)


def _row(cells: tuple[str, ...]) -> str:
    widths = (20, 6, 8, 5, 9, 12, 9, 13, 11, 5)
    return " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
