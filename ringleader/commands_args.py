"""`ringleader worker | submit | status | tail`.

Connection options (`--namespace`, `--bootstrap`, `--redis`) default to RINGLEADER_NAMESPACE,
RINGLEADER_BOOTSTRAP and RINGLEADER_REDIS, then to the built-in defaults.

Exit codes (for scripts):
  0  ok
  1  the task failed (submit --wait), or the worker stopped on a fatal error
  2  usage: bad arguments, bad JSON, bad configuration, a task that cannot be sent (submit
     --from-file: a line refused; the others are submitted), or the broker or Redis refused
     the credentials, the TLS handshake or an ACL
  3  the broker or Redis could not be reached (or refused the submission)
  4  timed out waiting for a result (submit --wait --timeout)
  5  worker --processes N: the children kept dying (the supervisor's crash-loop bound)
"""

from __future__ import annotations

import argparse

from ringleader import logs
from ringleader.lazy import lazy

# Priority names, as `ringleader.worker.lanes.priority_value` reads them: importing that
# module runs `ringleader.worker`'s __init__ (the whole runtime), too much for `--help`.
# tests/test_cli_startup.py holds the two to the same answers.
_PRIORITY_NAMES = {"high": 1, "normal": 0, "low": -1}


def _connection_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection (default: the RINGLEADER_* environment)")
    g.add_argument("--namespace", help="topic prefix (RINGLEADER_NAMESPACE)")
    g.add_argument("--bootstrap", help="Kafka bootstrap host:port[,...] (RINGLEADER_BOOTSTRAP)")
    g.add_argument("--redis", help="Redis URL for results and the registry (RINGLEADER_REDIS)")
    return p


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `worker`, `submit`, `status` and `tail` to the main CLI's subparsers."""
    conn = _connection_options()

    p = sub.add_parser(
        "worker", parents=[conn], help="run a worker process for an App", description=__doc__
    )
    p.add_argument("app", metavar="MODULE:APP", help="where the App is, e.g. myproj.tasks:app")
    p.add_argument("--id", dest="worker_id", help="worker id (default: host-pid)")
    p.add_argument("--concurrency", type=_positive_int, help="handler threads")
    p.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        help="worker processes (default 1); N > 1 runs a supervisor that restarts dead "
        "ones, ids <id>-0 .. <id>-N-1 (exits 5 when they keep dying)",
    )
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument("--metrics-host", help="address for /metrics (default 127.0.0.1)")
    p.add_argument("--log-level", help="DEBUG, INFO (default; -v: DEBUG), WARNING, ERROR")
    p.add_argument(
        "--log-format", choices=logs.FORMATS, default=None,
        help="text (default RINGLEADER_LOG_FORMAT or text) or json: one object a line",
    )  # fmt: skip
    p.set_defaults(func=lazy("ringleader.commands:run_worker_cmd"))

    p = sub.add_parser(
        "submit", parents=[conn], help="submit a task",
        description="Submit one task, or one per line of a file (--from-file).",
    )  # fmt: skip
    p.add_argument("name", nargs="?", help="task name (or --from-file)")
    p.add_argument(
        "--from-file", metavar="FILE",
        help="submit one task per line of FILE (- for stdin), each a JSON object: name, "
        "args, kwargs, key, priority, idempotency_key, delay or eta; exit 2 if a line was "
        "refused (the others are submitted)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="with --from-file: the summary as JSON")
    p.add_argument("--args", metavar="JSON", help="positional args, a JSON array")
    p.add_argument("--kwargs", metavar="JSON", help="keyword args, a JSON object")
    p.add_argument(
        "--key",
        help="routing key: tasks with the same key go to the same partition "
        "(not in order: a worker runs a partition's tasks concurrently, by priority)",
    )
    p.add_argument(
        "--priority",
        type=_priority,
        metavar="P",
        help="high, normal (default) or low, or an integer: above 0 is high, below 0 low; a "
        "higher level starts before tasks of lower levels queued on the broker",
    )
    p.add_argument("--idempotency-key", help="same key, same task id: runs at most once")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--delay", type=float, metavar="S", help="start no sooner than S seconds from now"
    )
    when.add_argument(
        "--eta", metavar="TIME", help="start no sooner than TIME (ISO 8601 with a UTC offset)"
    )
    p.add_argument("--wait", action="store_true", help="wait and print the result as JSON")
    p.add_argument("--timeout", type=float, help="with --wait: give up after S seconds (exit 4)")
    p.set_defaults(func=lazy("ringleader.commands:submit_cmd"), parser=p)

    p = sub.add_parser(
        "cancel", parents=[conn], help="cancel a task", description="Cancel a task by id."
    )
    p.add_argument("task_id", metavar="ID")
    p.set_defaults(func=lazy("ringleader.commands:cancel_cmd"))

    p = sub.add_parser("status", parents=[conn], help="group, assignment, lag, registry")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--group", help="workers' group id (default: RINGLEADER_GROUP_ID or <ns>.workers)"
    )
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C (a live table)")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="--watch: every S s")
    p.add_argument("--count", type=_positive_int, metavar="N", help="--watch: stop after N")
    p.set_defaults(func=lazy("ringleader.commands:status_cmd"))

    p = sub.add_parser("tail", parents=[conn], help="follow task events until Ctrl-C")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--max", type=_positive_int, metavar="N", help="stop after N events")
    p.add_argument("--idle", type=float, metavar="S", help="stop after S seconds without events")
    p.set_defaults(func=lazy("ringleader.commands:tail_cmd"))


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _priority(text: str) -> int:
    """high, normal, low (any case, spaces around) or an integer, as `priority_value`."""
    named = _PRIORITY_NAMES.get(text.strip().lower())
    if named is not None:
        return named
    try:
        return int(text)
    except ValueError:
        allowed = "an integer or one of high, normal, low"
        raise argparse.ArgumentTypeError(f"priority must be {allowed}; got {text!r}") from None
