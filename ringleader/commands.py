"""The handlers of `ringleader worker | submit | cancel | status | tail`.

Their options, defaults and exit codes are in `ringleader.commands_args`, which builds the
parsers from the standard library alone; the parsers name these handlers (`lazy`), so this
module and what it imports load only when one of the commands runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

from ringleader import logs
from ringleader.commands_args import add_parsers  # noqa: F401  (re-exported: it was here)
from ringleader.errors import (
    BrokerAuthError,
    BrokerUnavailableError,
    ConfigError,
    RedisAuthError,
    RedisUnavailableError,
)
from ringleader.handles import SubmitError
from ringleader.worker.errors import EnvelopeError, ResultGone, ResultTimeout, TaskError
from ringleader.worker.settings import AppSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4

# librdkafka logs every failed connection attempt to stderr; the CLI reports one clear error.
_QUIET = {"log_level": 2}
_ACCESS_TIMEOUT = 5.0  # seconds the CLI waits for the broker and Redis to let it in


def _err(msg: str) -> None:
    print(f"ringleader: error: {msg}", file=sys.stderr)


def _settings(args: argparse.Namespace) -> AppSettings:
    return AppSettings.from_env(
        namespace=args.namespace, bootstrap=args.bootstrap, redis=args.redis
    )


def _checked(
    args: argparse.Namespace, *, kafka: bool = True, redis: bool, report: bool = False
) -> AppSettings:
    """The settings, once the broker (and Redis) let this client in: a refusal or an absent
    broker is one line within seconds, not a client library retrying until its timeouts.
    With `report` (status) only a refusal stops here: status reports what is absent.
    `kafka=False` where the command's Client checks the broker itself (submit) or needs none
    (cancel)."""
    from ringleader.access import check_kafka, check_redis

    settings = _settings(args)
    checks: list[Callable[[], None]] = []
    if kafka:
        checks.append(lambda: check_kafka(settings.bootstrap, settings.security, _ACCESS_TIMEOUT))
    if redis:
        checks.append(
            lambda: check_redis(settings.redis, _ACCESS_TIMEOUT, namespace=settings.namespace)
        )
    for check in checks:
        try:
            check()
        except (BrokerUnavailableError, RedisUnavailableError):
            if not report:
                raise
    return settings


def _guard(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Turn the errors a person can act on into one line and an exit code."""
    try:
        return fn(args)
    except ConfigError as e:
        _err(f"configuration: {e}")
        return EXIT_USAGE
    except EnvelopeError as e:
        _err(str(e))
        return EXIT_USAGE
    except (BrokerAuthError, RedisAuthError) as e:
        _err(f"refused: {e}")
        return EXIT_USAGE
    except (BrokerUnavailableError, RedisUnavailableError, SubmitError) as e:
        _err(str(e))
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


# --- worker ---------------------------------------------------------------------------------


def run_worker_cmd(args: argparse.Namespace) -> int:
    level = args.log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
    try:
        logs.configure(level, args.log_format)
    except ConfigError as e:
        print(f"ringleader worker: {e}", file=sys.stderr)
        return 2
    if args.log_format:
        os.environ["RINGLEADER_LOG_FORMAT"] = args.log_format  # --processes children read it
    if args.processes > 1 and (args.metrics_port or os.environ.get("RINGLEADER_METRICS_PORT")):
        print("ringleader worker: --metrics-port serves one process; with --processes N run "
              "N workers with a port each", file=sys.stderr)  # fmt: skip
        return 2
    # The App is built by the user's module, from the environment for what it leaves unset.
    for opt, var in (
        ("namespace", "RINGLEADER_NAMESPACE"),
        ("bootstrap", "RINGLEADER_BOOTSTRAP"),
        ("redis", "RINGLEADER_REDIS"),
    ):
        value = getattr(args, opt)
        if value is not None:
            os.environ[var] = value
    if args.processes > 1:
        from ringleader.supervisor import run_supervisor

        return run_supervisor(args.app, args.worker_id, args.concurrency, args.processes)
    from ringleader.worker.run import run_worker, set_metrics_env  # late: the whole runtime

    set_metrics_env(args.metrics_port, args.metrics_host)

    return run_worker(args.app, args.worker_id, args.concurrency)


# --- submit ---------------------------------------------------------------------------------


def submit_cmd(args: argparse.Namespace) -> int:
    from ringleader.submit_file import usage_problem

    problem = usage_problem(args)
    if problem is not None:
        args.parser.error(problem)  # usage and exit 2
    return _guard(_submit if args.from_file is None else _submit_from_file, args)


def _submit_from_file(args: argparse.Namespace) -> int:
    from ringleader.submit_file import submit_file_cmd

    options = {"producer_config": _QUIET, "connect_timeout": _ACCESS_TIMEOUT}
    settings = _checked(args, kafka=False, redis=False)  # the Client checks, as for one task
    return submit_file_cmd(args.from_file, settings, as_json=args.json, client_options=options)


def _submit(args: argparse.Namespace) -> int:
    from ringleader.client import Client
    from ringleader.task_lines import json_option, parse_eta

    task_args = json_option("[]" if args.args is None else args.args, "--args", list)
    task_kwargs = json_option("{}" if args.kwargs is None else args.kwargs, "--kwargs", dict)
    if args.timeout is not None and not args.wait:
        raise EnvelopeError("--timeout only makes sense with --wait")
    if args.timeout is not None and args.timeout < 0:
        raise EnvelopeError("--timeout must be >= 0 seconds")
    settings = _checked(args, kafka=False, redis=args.wait)
    # The Client's first contact checks the broker (a refusal is told within this bound).
    with Client(
        settings=settings, producer_config=_QUIET, connect_timeout=_ACCESS_TIMEOUT
    ) as client:
        h = client.submit(
            args.name,
            task_args,
            task_kwargs,
            key=args.key,
            priority=args.priority or 0,
            idempotency_key=args.idempotency_key,
            countdown=args.delay,
            eta=None if args.eta is None else parse_eta(args.eta),
        )
        if not args.wait:
            print(h.id, flush=True)
            return EXIT_OK
        print(f"submitted {h.id}", file=sys.stderr, flush=True)
        try:
            value = h.result(timeout=args.timeout)
        except (TaskError, ResultGone) as e:  # ResultGone: it will never have a result
            _err(str(e))
            return EXIT_FAILED
        except ResultTimeout as e:
            _err(f"{e} (it may still run; check `ringleader tail` or submit --wait again)")
            return EXIT_TIMEOUT
        print(json.dumps(value, default=_jsonable), flush=True)
        return EXIT_OK


# --- cancel ---------------------------------------------------------------------------------


def cancel_cmd(args: argparse.Namespace) -> int:
    return _guard(_cancel, args)


def _cancel(args: argparse.Namespace) -> int:
    from ringleader.client import Client
    from ringleader.worker.cancel import CancelOutcome

    settings = _checked(args, kafka=False, redis=True)
    with Client(settings=settings, producer_config=_QUIET) as client:
        outcome = client.cancel(args.task_id)
    said = {
        CancelOutcome.CANCELLED: "cancelled: it will not start",
        CancelOutcome.REQUESTED: "cancel requested: it is running and stops at its next checkpoint",
        CancelOutcome.FINISHED: "not cancelled: it had already finished",
    }
    print(f"{args.task_id}: {said[outcome]}", flush=True)
    return EXIT_OK if outcome is not CancelOutcome.FINISHED else EXIT_FAILED


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return repr(value)


# --- status ---------------------------------------------------------------------------------


def status_cmd(args: argparse.Namespace) -> int:
    return _guard(_status, args)


def _status(args: argparse.Namespace) -> int:
    from ringleader.status import format_text, gather

    settings = _checked(args, redis=True, report=True)
    if args.watch:
        from ringleader.status_watch import watch

        return watch(lambda: gather(settings, group_id=args.group), out=sys.stdout,
                     interval=max(0.2, args.interval), count=args.count, as_json=args.json,
                     jsonable=_jsonable)  # fmt: skip
    report = gather(settings, group_id=args.group)
    if args.json:
        print(json.dumps(report.to_json(), default=_jsonable), flush=True)
    else:
        print(format_text(report), flush=True)
    return EXIT_UNAVAILABLE if report.unreachable else EXIT_OK


# --- tail -----------------------------------------------------------------------------------


def tail_cmd(args: argparse.Namespace) -> int:
    return _guard(_tail, args)


def _tail(args: argparse.Namespace) -> int:
    from ringleader.tail import event_row, format_event, tail

    n = 0
    try:
        for ev in tail(_checked(args, redis=False), args.from_beginning, idle=args.idle):
            line = json.dumps(event_row(ev)) if args.json else format_event(ev)
            print(line, flush=True)
            n += 1
            if args.max is not None and n >= args.max:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a person stops following
    except BrokenPipeError:  # `ringleader tail | head`
        sys.stderr.close()
    return EXIT_OK
