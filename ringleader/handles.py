"""What a submission gives back: handles on acknowledged tasks and batches, or an error that
names what was acknowledged before the failure."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ringleader.errors import BrokerUnavailableError, RingleaderError
from ringleader.worker.cancel import CancelOutcome
from ringleader.worker.results import Status

__all__ = [
    "BatchHandle",
    "ResultSource",
    "SubmitError",
    "SubmitTimeout",
    "TaskHandle",
]


class ResultSource(Protocol):
    """Where a handle reads its task's status and result (a `Client`)."""

    def status(self, task_id: str) -> Status: ...

    def cancel(self, task_id: str) -> CancelOutcome: ...

    def result(
        self, task_id: str, timeout: float | None = None, *, acked_at: float | None = None
    ) -> Any: ...


class TaskHandle:
    """A submitted, acknowledged task: `id`, `status()`, `result(timeout=...)`."""

    __slots__ = ("_source", "acked_at", "id", "name", "partition")

    def __init__(
        self, source: ResultSource, task_id: str, name: str, partition: int | None
    ) -> None:
        self._source = source
        self.id = task_id
        self.name = name
        # The partition of <ns>.tasks: murmur2 of the key, else the client's round robin.
        self.partition = partition
        # Handles are made once the broker has the record: when it was acknowledged, near
        # enough (monotonic, this process), to tell a result that expired from one to come.
        self.acked_at = time.monotonic()

    def status(self) -> Status:
        """The stored status; PENDING while no worker has reported on it yet."""
        return self._source.status(self.id)

    def cancel(self) -> CancelOutcome:
        """Cancel it (see `Client.cancel`): CANCELLED, REQUESTED (running) or FINISHED."""
        return self._source.cancel(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value; raises TaskError if it failed for good, ResultTimeout if
        nothing arrived within `timeout` seconds.

        With no timeout it waits as long as a result may still come, and raises ResultGone
        when one no longer can: the task was dead-lettered without a result record, or Redis
        knows nothing of it more than the result TTL after it was acknowledged (its record
        expired, or a Redis without persistence lost it). A task submitted with a not_before
        later than the TTL counts as expired too: wait for it with a timeout."""
        return self._source.result(self.id, timeout, acked_at=self.acked_at)

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id!r}, name={self.name!r})"


@dataclass(frozen=True, slots=True)
class BatchHandle:
    """A submitted batch: its id, its tasks' handles, and the commit's offset on
    `<ns>.batches` (-1 when the commit was deliberately skipped)."""

    id: str
    tasks: list[TaskHandle]
    commit_offset: int

    @property
    def committed(self) -> bool:
        return self.commit_offset >= 0

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[TaskHandle]:
        return iter(self.tasks)


class SubmitError(RingleaderError):
    """The broker refused or did not acknowledge a submission.

    For `submit_many`, `acknowledged` holds the handles of the tasks that did get through.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool = False,
        acknowledged: Sequence[TaskHandle] = (),
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.acknowledged = list(acknowledged)


class SubmitTimeout(SubmitError, BrokerUnavailableError):
    """The broker did not acknowledge every task in time (unreachable, or too slow).

    Both a SubmitError (with `acknowledged`) and a BrokerUnavailableError, so callers that
    catch either see it.
    """

    def __init__(self, message: str, *, acknowledged: Sequence[TaskHandle] = ()) -> None:
        super().__init__(message, retriable=True, acknowledged=acknowledged)
