"""ringleader worker package: envelopes, scheduling queue, offsets, retries, execution, results.

The runtime (consumer loop, handler pool, membership) is assembled on top of these modules.
"""

from worker.app import App
from worker.envelope import Envelope
from worker.errors import (
    ConfigError,
    EnvelopeError,
    PayloadTooLarge,
    ResultTimeout,
    TaskError,
    TaskTimeout,
    WorkerError,
)
from worker.retry import Backoff, RetryPolicy
from worker.settings import AppSettings, KafkaSecurity
from worker.tasks import Task, TaskContext

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
