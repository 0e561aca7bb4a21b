"""Errors raised by the worker package.

Everything derives from `ringleader.errors.RingleaderError` so callers can catch one base,
and carries `retriable` like kafka-python's errors. `ConfigError` is the root's, re-exported
here for the imports that already name this module.
"""

from __future__ import annotations

from ringleader.errors import ConfigError, RingleaderError

__all__ = [
    "ConfigError",
    "EnvelopeError",
    "PayloadTooLarge",
    "ResultGone",
    "ResultTimeout",
    "TaskCancelled",
    "TaskError",
    "TaskTimeout",
    "WorkerError",
]


class WorkerError(RingleaderError):
    """Base of the worker package's errors."""


class EnvelopeError(WorkerError):
    """Bytes that are not a valid task envelope (or dead-letter/event record)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PayloadTooLarge(EnvelopeError):
    """An encoded envelope exceeds the configured payload limit."""

    def __init__(self, size: int, limit: int, *, where: str = "") -> None:
        self.size = size
        self.limit = limit
        self.where = where  # which task of a call, e.g. "task 3 ('resize')"
        msg = f"payload too large: {size} bytes exceeds the limit of {limit} bytes"
        super().__init__(f"{where}: {msg}" if where else msg)


class TaskTimeout(WorkerError):
    """A task ran longer than its `timeout`; retried like any other failure."""

    retriable = True

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"task {name!r} exceeded its timeout of {timeout:g}s")


class TaskError(WorkerError):
    """Re-raised by a client for a task that ended in failure (type and message of the cause)."""

    def __init__(self, task_id: str, error_type: str, message: str) -> None:
        self.task_id = task_id
        self.error_type = error_type
        self.message = message
        super().__init__(f"task {task_id} failed: {error_type}: {message}")


# The error type a cancelled task's completion record carries.
CANCELLED_TYPE = "TaskCancelled"


class TaskCancelled(TaskError):
    """The task was cancelled: before it started (it never ran), or while running (it stopped
    at a `ctx.checkpoint()`). Raised by `result()`, and by `checkpoint()` inside the task."""

    def __init__(self, task_id: str, message: str = "cancelled") -> None:
        super().__init__(task_id, CANCELLED_TYPE, message)


class TaskClaimLost(WorkerError):
    """Raised by `ctx.checkpoint()` when the worker was paused or cut off from Redis past its
    alive TTL (the session timeout): another worker may be running the task now, so this run
    stops without an outcome of its own."""

    def __init__(self, task_id: str, message: str) -> None:
        self.task_id = task_id
        self.message = message
        super().__init__(f"task {task_id}: {message}")


class ResultTimeout(WorkerError, TimeoutError):
    """No result arrived for a task within the caller's timeout."""

    retriable = True

    def __init__(self, task_id: str, timeout: float) -> None:
        self.task_id = task_id
        self.timeout = timeout
        super().__init__(f"no result for task {task_id} within {timeout:g}s")


class ResultGone(WorkerError):
    """A task's result can no longer appear, so waiting for it would never end: it was
    dead-lettered without a result record, or everything Redis knew about it expired (the
    result TTL passed since it was acknowledged; or Redis lost it without persistence)."""

    def __init__(self, task_id: str, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"no result for task {task_id} can appear any more: {reason}")
