"""`ringleader local up|down|status`: local services for development and tests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ringleader.local import progress, secure, services
from ringleader.local.args import DEFAULT_DIR, add_parser  # noqa: F401  (re-exported)


def _up(args: argparse.Namespace) -> int:
    if not (args.kafka or args.tansu or args.redis or args.valkey):
        print("nothing to start: give --kafka or --tansu, and/or --redis or --valkey",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.secure and (args.tansu or args.valkey):
        print("--secure works with --kafka and --redis (not Tansu or Valkey)", file=sys.stderr)
        return 2
    try:
        stack = services.up(
            args.dir,
            kafka_nodes=args.nodes if args.kafka else 0,
            tansu=args.tansu,
            redis=args.redis,
            valkey=args.valkey,
            secure=args.secure,
            say=progress.to_stream("local: "),  # stderr: stdout stays what scripts parse
        )
    except services.ServiceStartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.secure:
        _print_secure(stack, secure.connection(Path(stack.dir)) or {}, as_json=args.json)
    elif args.json:
        print(json.dumps({"bootstrap": stack.bootstrap, "redis": stack.redis}))
    else:
        if stack.bootstrap:
            print(f"bootstrap: {stack.bootstrap}")
        if stack.redis:
            print(f"redis:     {stack.redis}")
        for name, secs in stack.started_in.items():
            print(f"  {name}: {secs}")
    return 0


def _print_secure(stack: services.Stack, conn: dict[str, Any], *, as_json: bool) -> None:
    """`--json`: everything clients need, passwords included. Otherwise no password."""
    if as_json:
        print(json.dumps(conn))
        return
    if stack.bootstrap:
        print(f"bootstrap: {stack.bootstrap} (SASL_SSL, {conn['sasl_mechanism']}, "
              f"user {conn['sasl_username']})")  # fmt: skip
        for name, lst in conn.get("listeners", {}).items():
            print(f"  {name}: {lst['bootstrap']}")
    if stack.redis:
        print(f"redis:     {stack.redis}")
    print(f"ca:        {conn['tls']['ca']}")
    print(f"passwords: in {Path(stack.dir) / secure.SECRETS} (or run with --json)")
    for name, secs in stack.started_in.items():
        print(f"  {name}: {secs}")


def _down(args: argparse.Namespace) -> int:
    stopped = services.down(args.dir)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    st = services.status(args.dir)
    if args.json:
        print(json.dumps(st))
        return 0
    if not st["services"]:
        print(f"{st['dir']}: nothing running")
        return 3
    print(f"{st['dir']}: bootstrap={st.get('bootstrap')} redis={st.get('redis')}")
    for s in st["services"]:  # type: ignore[attr-defined]
        state = "up" if s["alive"] else "DOWN"
        print(f"  {s['name']:10} pid={s['pid']:<8} {s['address']:22} {state}")
    return 0 if st["running"] else 3
