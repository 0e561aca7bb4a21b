"""`ringleader chaos list` and `ringleader chaos run [SCENARIO ...]`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from ringleader.chaos.args import FAULTS, add_parser  # noqa: F401  (re-exported: were here)
from ringleader.chaos.backends.base import Backend, BackendError
from ringleader.chaos.report import Report
from ringleader.chaos.runner import Plan, ScenarioError
from ringleader.chaos.scenarios import SCENARIOS, by_name, run

COLUMNS = ("scenario", "tasks", "refused", "lost", "dup_exec", "dup_records", "overlaps",
           "generation_s", "failover_s", "ok")  # fmt: skip


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
