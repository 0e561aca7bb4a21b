"""ringleader worker package: the worker process only (envelopes, scheduling queue, offsets,
retries, execution, results, and the runtime assembled on them).

The producer API, the CLI and the operator views live in the `ringleader` facade, which
imports this package; nothing here imports the facade.

The names below load on first use (PEP 562): importing any module of the package
(`ringleader.worker.lanes`, say) runs this file first, and it loads none of them then (App
alone brings in the settings, the retry policy and the envelope codec).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringleader.security import KafkaSecurity
    from ringleader.worker.app import App
    from ringleader.worker.envelope import Envelope
    from ringleader.worker.errors import (
        ConfigError,
        EnvelopeError,
        PayloadTooLarge,
        ResultTimeout,
        TaskError,
        TaskTimeout,
        WorkerError,
    )
    from ringleader.worker.retry import Backoff, RetryPolicy
    from ringleader.worker.settings import AppSettings
    from ringleader.worker.tasks import Task, TaskContext

__all__ = [
    "App",
    "AppSettings",
    "Backoff",
    "ConfigError",
    "Envelope",
    "EnvelopeError",
    "KafkaSecurity",
    "PayloadTooLarge",
    "ResultTimeout",
    "RetryPolicy",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskTimeout",
    "WorkerError",
]

# Where each name of __all__ comes from.
_HOMES = {
    "App": "ringleader.worker.app",
    "AppSettings": "ringleader.worker.settings",
    "Backoff": "ringleader.worker.retry",
    "ConfigError": "ringleader.worker.errors",
    "Envelope": "ringleader.worker.envelope",
    "EnvelopeError": "ringleader.worker.errors",
    "KafkaSecurity": "ringleader.security",
    "PayloadTooLarge": "ringleader.worker.errors",
    "ResultTimeout": "ringleader.worker.errors",
    "RetryPolicy": "ringleader.worker.retry",
    "Task": "ringleader.worker.tasks",
    "TaskContext": "ringleader.worker.tasks",
    "TaskError": "ringleader.worker.errors",
    "TaskTimeout": "ringleader.worker.errors",
    "WorkerError": "ringleader.worker.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # next time a plain lookup
        return value
    if not name.startswith("__"):
        # A submodule not imported yet: the eager imports this file made once left those
        # they loaded bound here (`import ringleader.worker`, then `.settings.X`).
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
