"""Task definitions and the registry a worker looks names up in."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ringleader.worker.envelope import Envelope
from ringleader.worker.errors import ConfigError, TaskCancelled, TaskClaimLost
from ringleader.worker.retry import RetryPolicy


def _never() -> bool:
    return False


def _always() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class TaskContext:
    """First argument of a task registered with `bind=True`."""

    task_id: str
    name: str
    attempt: int
    idempotency_key: str | None
    logger: logging.LoggerAdapter[logging.Logger]
    # Asks Redis whether a cancel was requested (`worker.cancel`); never, outside a worker.
    cancel_check: Callable[[], bool] = field(default=_never, repr=False)
    # Whether this process's claim on its runs stands (its alive key is fresh: a local clock
    # read, no I/O); always, outside a worker.
    claim_check: Callable[[], bool] = field(default=_always, repr=False)

    @classmethod
    def for_envelope(
        cls,
        env: Envelope,
        worker_id: str | None = None,
        cancel_check: Callable[[], bool] | None = None,
        claim_check: Callable[[], bool] | None = None,
    ) -> TaskContext:
        base = logging.getLogger(f"ringleader.task.{env.name}")
        extra = {"task_id": env.id, "attempt": env.attempt, "worker_id": worker_id}
        log = _TaskLogger(base, extra)
        return cls(
            env.id, env.name, env.attempt, env.idempotency_key, log,
            cancel_check or _never, claim_check or _always,
        )  # fmt: skip

    @property
    def claim_held(self) -> bool:
        """Whether this run is still this worker's. False once the worker was paused or cut
        off from Redis past its session timeout: another worker may be running the task by
        now. A graceful stop or a rebalance does not take it away (they wait for the run)."""
        return self.claim_check()

    @property
    def cancelled(self) -> bool:
        """Whether someone asked to cancel this task while it runs (one Redis read)."""
        return self.cancel_check()

    def checkpoint(self) -> None:
        """Call it where stopping is safe. Raises `TaskClaimLost` when the run is no longer
        this worker's (`claim_held`): it ends with no outcome, and the worker that took the
        task over runs it, so two runs never work side by side. Raises `TaskCancelled` if a
        cancel was requested: the run ends as cancelled (no retry, no dead letter)."""
        if not self.claim_check():
            raise TaskClaimLost(self.task_id, "this worker was paused or cut off past its TTL")
        if self.cancel_check():
            raise TaskCancelled(self.task_id, "cancelled while running")


class _TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes messages with the task id and attempt (and keeps them as record attributes)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"[{extra.get('task_id')} #{extra.get('attempt')}] {msg}", {**kwargs, "extra": extra}


@dataclass(frozen=True, slots=True)
class Task:
    """A registered task. Calling it runs the function in-process, as Celery tasks do."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    timeout: float | None = None
    bind: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"task name must be a non-empty string, got {self.name!r}")
        if not callable(self.fn):
            raise ConfigError(f"task {self.name!r}: fn must be callable")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not self.timeout > 0
        ):
            raise ConfigError(f"task {self.name!r}: timeout must be > 0 or None")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def run(self, ctx: TaskContext | None, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run for a delivered envelope: the context goes first when `bind` is set."""
        if self.bind:
            if ctx is None:
                raise TypeError(f"task {self.name!r} is bound and needs a TaskContext")
            return self.fn(ctx, *args, **kwargs)
        return self.fn(*args, **kwargs)


def default_task_name(fn: Callable[..., Any]) -> str:
    """module.qualname, like Celery's default."""
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not qualname:
        raise ConfigError(f"cannot derive a task name from {fn!r}; pass name=")
    return f"{module}.{qualname}"


class TaskRegistry:
    """Name → Task. Registering a different function under a taken name is an error."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, task: Task) -> Task:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigError(f"task name {task.name!r} is already registered for {existing.fn!r}")
        self._tasks[task.name] = task
        return task

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        return sorted(self._tasks)
