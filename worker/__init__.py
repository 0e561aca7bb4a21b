"""ringleader worker package: envelopes, scheduling queue, offsets, retries, execution, results.

The runtime (consumer loop, handler pool, membership) is assembled on top of these modules.
"""

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
from ringleader.worker.settings import AppSettings, KafkaSecurity
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
