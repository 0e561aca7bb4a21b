"""`python -m ringleader.worker.run MODULE:APP [--id ID] [--concurrency N]`: run one worker
process (`ringleader worker` calls `run_worker` too).

The worker process's entry stays in the worker package: it loads the user's App and runs a
`Worker` until a signal, and `worker_env` is the environment contract such a process reads.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when the worker stopped on a fatal error
(fenced for good, a crashed loop), 2 for a bad app reference or configuration (also when
the broker or Redis refuses the credentials, the TLS handshake or an ACL), 3 when the
broker or Redis did not answer within RINGLEADER_WORKER_PREFLIGHT_TIMEOUT at start (the
worker never joined the group). Each is reported in one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from types import FrameType

from ringleader import logs
from ringleader.errors import (
    BrokerAuthError,
    BrokerUnavailableError,
    ConfigError,
    RedisAuthError,
    RedisUnavailableError,
)
from ringleader.worker.app import App
from ringleader.worker.settings import AppSettings

log = logging.getLogger("ringleader.worker.run")

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


class AppRefError(ConfigError):
    """MODULE:APP does not name an App (a configuration error: exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, setting="app")


def load_app(app_ref: str) -> App:
    """Import `module:attribute` (attribute may be dotted) and check it is an App."""
    module_name, sep, attr = app_ref.partition(":")
    if not sep or not module_name or not attr:
        raise AppRefError(f"app reference must look like MODULE:APP, got {app_ref!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current directory's modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AppRefError(f"cannot import module {module_name!r}: {e}") from e
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppRefError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise AppRefError(f"{app_ref!r} is a {type(obj).__name__}, not a ringleader App")
    return obj


def worker_env(
    settings: AppSettings,
    *,
    session_ms: int | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker process started by a script (the demo, tests): `base`
    (default os.environ) without its RINGLEADER_* variables, then `settings.to_env()`.

    With `session_ms`, the group timings that make a dead worker's partitions move soon after
    the session timeout: heartbeats every 500 ms, self-fencing 2 s before the session ends.
    """
    src = os.environ if base is None else base
    env = {k: v for k, v in src.items() if not k.startswith("RINGLEADER_")}
    env.update(settings.to_env())
    if session_ms is not None:
        env.update(
            {
                "RINGLEADER_SESSION_TIMEOUT_MS": str(session_ms),
                "RINGLEADER_REBALANCE_TIMEOUT_MS": str(max(2 * session_ms, 12000)),
                "RINGLEADER_HEARTBEAT_INTERVAL_MS": "500",
                "RINGLEADER_FENCE_MARGIN_MS": "2000",
            }
        )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def set_metrics_env(port: int | None, host: str | None) -> None:
    """`--metrics-port`/`--metrics-host` as the environment the Worker reads them from."""
    if port is not None:
        os.environ["RINGLEADER_METRICS_PORT"] = str(port)
    if host is not None:
        os.environ["RINGLEADER_METRICS_HOST"] = host


def run_worker(app_ref: str, worker_id: str | None = None, concurrency: int | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the process exit code."""
    from ringleader.worker.runtime import Worker

    try:
        app = load_app(app_ref)
        worker = Worker(app, worker_id=worker_id, concurrency=concurrency)
    except ConfigError as e:  # AppRefError too
        print(f"ringleader worker: {e}", file=sys.stderr)
        return EXIT_CONFIG

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    except ConfigError as e:
        print(f"ringleader worker: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (BrokerAuthError, RedisAuthError) as e:
        # Restarting with the same credentials cannot help: a configuration error.
        print(f"ringleader worker: refused: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (BrokerUnavailableError, RedisUnavailableError) as e:
        print(f"ringleader worker: cannot start: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if worker.fatal is not None:
        print(f"ringleader worker: stopped: {worker.fatal}", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m ringleader.worker.run", description="Run a worker."
    )
    ap.add_argument("app", help="MODULE:APP, e.g. myproject.tasks:app")
    ap.add_argument("--id", dest="worker_id", default=None, help="worker id (default host-pid)")
    ap.add_argument("--concurrency", type=int, default=None, help="handler threads")
    ap.add_argument("--log-level", default=None, help="default RINGLEADER_LOG_LEVEL or WARNING")
    ap.add_argument(
        "--log-format", choices=logs.FORMATS, default=None,
        help="text (default RINGLEADER_LOG_FORMAT or text) or json: one object a line",
    )  # fmt: skip
    ap.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port (RINGLEADER_METRICS_PORT)",
    )
    ap.add_argument(
        "--metrics-host",
        default=None,
        help="address to serve it on (RINGLEADER_METRICS_HOST, default 127.0.0.1)",
    )
    args = ap.parse_args(argv)
    set_metrics_env(args.metrics_port, args.metrics_host)
    try:
        logs.configure(args.log_level, args.log_format)
    except ConfigError as e:
        print(f"ringleader worker: {e}", file=sys.stderr)
        return EXIT_CONFIG
    return run_worker(args.app, args.worker_id, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
