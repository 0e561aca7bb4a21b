"""Run one envelope against the task registry and say what happened, without raising.

The outcome tells the runtime what to do next: record a success, schedule a retry, park the
task until its downstream recovers, or dead-letter it. An undecodable envelope, an unknown task
name, a result msgpack cannot carry, a failure after the last retry: each becomes a DeadLetter
with the reason. Only BaseExceptions that are not Exceptions (KeyboardInterrupt, SystemExit)
pass through.
"""

from __future__ import annotations

import contextvars
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgpack

from ringleader.logs import task_scope
from ringleader.worker.envelope import Envelope
from ringleader.worker.errors import TaskCancelled, TaskClaimLost, TaskTimeout
from ringleader.worker.tasks import Task, TaskContext, TaskRegistry

T = TypeVar("T")


@runtime_checkable
class ServiceUnavailableLike(Protocol):
    """Any exception with `service` and `retry_at` (wall-clock seconds) means: park the task.

    `registry.errors.ServiceUnavailable` is one; the task did not reach its downstream.
    """

    service: str
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class Succeeded:
    result: Any
    packed: bytes  # the result as msgpack, ready for the result store


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float  # seconds until the next attempt
    error_type: str
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    error_type: str | None = None  # set when the task itself raised
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The task stopped at a `ctx.checkpoint()` after a cancel was requested."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unschedulable:
    service: str
    retry_at: float | None
    error: str


@dataclass(frozen=True, slots=True)
class ClaimLost:
    """The task stopped at a `ctx.checkpoint()` because this worker was paused or cut off
    past its alive TTL: nothing is recorded for this run; the worker that took over runs it."""

    reason: str


Outcome = Succeeded | Retry | DeadLetter | Unschedulable | Cancelled | ClaimLost


def execute(
    env: Envelope,
    registry: TaskRegistry,
    rng: random.Random,
    *,
    worker_id: str | None = None,
    cancel_check: Callable[[], bool] | None = None,
    claim_check: Callable[[], bool] | None = None,
    where: tuple[int, int] | None = None,
) -> Outcome:
    """Run one attempt of `env` (its `attempt` field says which); `cancel_check` and
    `claim_check` back the context's `cancelled`, `claim_held` and `checkpoint()`; `where`
    (partition, generation) goes on the log lines of the run with the task's own fields."""
    task = registry.get(env.name)
    if task is None:
        return DeadLetter(reason=f"unknown task name {env.name!r}")
    # Only bound tasks see a context; building its logger costs more than a no-op task.
    ctx = TaskContext.for_envelope(env, worker_id, cancel_check, claim_check) if task.bind else None
    partition, generation = where or (None, None)
    fields = {"task_id": env.id, "task": env.name, "attempt": env.attempt,
              "partition": partition, "generation": generation, "worker_id": worker_id}  # fmt: skip
    try:
        with task_scope(fields):
            return _run(env, task, ctx, rng)
    except (TaskClaimLost, TaskCancelled) as exc:  # raised by `_run` only for this task
        return ClaimLost(exc.message) if isinstance(exc, TaskClaimLost) else Cancelled(exc.message)


def _run(env: Envelope, task: Task, ctx: TaskContext | None, rng: random.Random) -> Outcome:
    try:
        if task.timeout is None:
            result = task.run(ctx, env.args, env.kwargs)
        else:
            result = call_with_timeout(
                lambda: task.run(ctx, env.args, env.kwargs), task.timeout, task.name
            )
    except (TaskClaimLost, TaskCancelled) as exc:
        if exc.task_id != env.id:  # a child's, that a parent let through: its own failure
            return _failure(env, exc, task.retry.next_delay, rng)
        raise
    except Exception as exc:  # noqa: BLE001 - a task's failure is data here, never a crash
        return _failure(env, exc, task.retry.next_delay, rng)
    try:
        packed = msgpack.packb(result, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        return DeadLetter(
            reason=f"result of {env.name!r} is not msgpack-serialisable: {e}",
            error_type=type(e).__name__,
            error=f"result is not msgpack-serialisable: {e}",
        )
    return Succeeded(result, packed)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(
    env: Envelope,
    exc: Exception,
    next_delay: Callable[[int, BaseException, random.Random], float | None],
    rng: random.Random,
) -> Outcome:
    if isinstance(exc, ServiceUnavailableLike) and isinstance(exc.service, str):
        retry_at = exc.retry_at
        if retry_at is None or isinstance(retry_at, int | float):
            return Unschedulable(exc.service, retry_at, describe(exc))
    delay = next_delay(env.attempt, exc, rng)
    if delay is None:
        what = "non-retriable error" if env.attempt == 1 else f"failed after {env.attempt} attempts"
        return DeadLetter(
            reason=f"{what}: {describe(exc)}", error_type=type(exc).__name__, error=str(exc)
        )
    return Retry(delay, type(exc).__name__, str(exc))


class _Abandoned(BaseException):
    """Raised inside a timed-out task's thread so that it stops at its next bytecode.

    A BaseException so that the task's own `except Exception` does not swallow it.
    """


def call_with_timeout(fn: Callable[[], T], timeout: float | None, name: str) -> T:
    """Run `fn`; past `timeout` seconds raise TaskTimeout and interrupt it (best effort).

    Python threads cannot be killed: the call runs in a daemon thread, and on timeout an
    exception is injected into it (as dramatiq's time limit does); code blocked inside C keeps
    running until it returns to Python.
    """
    if timeout is None:
        return fn()
    box: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()  # the run's log fields (`logs.task_scope`) go along
    # Held while the caller injects, so the thread is alive (its ident not reused) meanwhile.
    lock = threading.Lock()

    def target() -> None:
        try:
            try:
                outcome: tuple[bool, Any] = (True, context.run(fn))
            except _Abandoned:
                raise
            except BaseException as e:  # noqa: BLE001 - carried to the caller, re-raised there
                outcome = (False, e)
            with lock:
                box.append(outcome)
        except _Abandoned:
            pass

    thread = threading.Thread(target=target, name=f"ringleader-task-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    with lock:
        if not box:
            if thread.ident is not None:
                import ctypes  # lazy: only a timed-out task needs it, not every worker's start

                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(_Abandoned)
                )
            raise TaskTimeout(name, timeout)
    ok, value = box[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
