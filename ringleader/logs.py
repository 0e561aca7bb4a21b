"""Log output a person or a machine can read: `--log-format text|json`, `--log-level`.

JSON is one object per line: `ts` (ISO 8601, UTC), `level`, `logger`, `msg`, `process`,
`thread`, `exc` when there is a traceback, and on every line logged while a task runs (by the
task through `ctx.logger` or by any logger the task's code uses) `task_id`, `task`,
`attempt`, `partition`, `generation` and `worker_id`. The worker sets those for the handler
thread that runs the task (`task_scope`), so user code needs no logger of ours to carry them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ringleader.errors import ConfigError

__all__ = ["FORMATS", "TASK_FIELDS", "JsonFormatter", "configure", "librdkafka", "task_scope"]

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TASK_FIELDS = ("task_id", "task", "attempt", "partition", "generation", "worker_id")
TEXT_FORMAT = "%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s"

_task: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "ringleader_task_log_fields", default=None
)


@contextlib.contextmanager
def task_scope(fields: Mapping[str, object]) -> Iterator[None]:
    """Log lines of this thread carry `fields` (a subset of TASK_FIELDS) until the block ends."""
    token = _task.set(fields)
    try:
        yield
    finally:
        _task.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        scope = _task.get()
        for key in TASK_FIELDS:
            value = record.__dict__.get(key)
            if value is None and scope is not None:
                value = scope.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


def check(level: str, fmt: str) -> tuple[int, str]:
    """The level as a number and the format, or ConfigError naming the bad one."""
    name = level.upper()
    if name not in LEVELS:
        raise ConfigError(
            f"log level must be one of {', '.join(LEVELS)}, got {level!r}", setting="log_level"
        )
    if fmt not in FORMATS:
        raise ConfigError(
            f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}", setting="log_format"
        )
    return logging.getLevelName(name), fmt


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Set the root logger up on stderr; unset arguments come from RINGLEADER_LOG_LEVEL and
    RINGLEADER_LOG_FORMAT (defaults WARNING and text). Replaces any earlier set-up."""
    lvl, form = check(
        level or os.environ.get("RINGLEADER_LOG_LEVEL") or "WARNING",
        fmt or os.environ.get("RINGLEADER_LOG_FORMAT") or "text",
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=lvl, handlers=[handler], force=True)


def librdkafka() -> dict[str, Any]:
    """Extra confluent-kafka config that routes librdkafka's log lines (otherwise printed
    raw to stderr, `%4|...`) to the `ringleader.librdkafka` logger, when the output is JSON.
    They arrive on the client's poll calls, which the worker makes all the time."""
    json_out = any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
    return {"logger": logging.getLogger("ringleader.librdkafka")} if json_out else {}
