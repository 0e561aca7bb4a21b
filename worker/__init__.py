"""ringleader worker package: the worker process only (envelopes, scheduling queue, offsets,
retries, execution, results, and the runtime assembled on them).

The producer API, the CLI and the operator views live in the `ringleader` facade, which
imports this package; nothing here imports the facade.
"""

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
