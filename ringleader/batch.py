"""Atomic batches of tasks, producer side: none of them runs unless all were committed.

Every task's envelope goes to `<ns>.tasks` carrying `batch=<batch_id>`; once the broker has
acknowledged all of them, the batch is committed as a 2PC transaction (`coordinator.txlog`,
kind "batch") on `<ns>.batches`: one part per task, named by task id, holding the SHA-256 of
the envelope as submitted, then the commit record (part count + digest). A producer that dies
between the tasks and the commit leaves a batch that is never committed; workers
(`worker.batches.BatchGate`) hold its tasks and finally abandon them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ringleader.coordinator.txlog import TxLogError, TxLogWriter
from ringleader.handles import BatchHandle, SubmitError
from ringleader.packing import TaskSpec
from ringleader.producing import TaskProducer
from ringleader.worker.batches import KIND, MAX_BATCH, part_value
from ringleader.worker.envelope import new_task_id

__all__ = ["BatchWriter"]


class BatchWriter:
    """Writes batches through a TaskProducer; the 2PC log writer (its own producer, on
    `<ns>.batches`) is made on first use."""

    def __init__(self, producer: TaskProducer, *, commit_timeout: float | None = None) -> None:
        self._producer = producer
        self.commit_timeout = producer.submit_timeout if commit_timeout is None else commit_timeout
        self._txlog: TxLogWriter | None = None
        self._lock = threading.Lock()

    def _writer(self) -> TxLogWriter:
        with self._lock:
            if self._txlog is None:
                s = self._producer.settings
                self._txlog = TxLogWriter(
                    s.bootstrap,
                    self._producer.topics.batches,
                    KIND,
                    producer_config=s.security.librdkafka_config(),
                )
            return self._txlog

    def submit(self, specs: Sequence[TaskSpec], *, commit: bool = True) -> BatchHandle:
        """Produce every task (all acknowledged), then commit the batch.

        `commit=False` is a test hook: stop after the tasks, before the commit, as a producer
        that dies there would. Raises SubmitError if the tasks or the commit fail; tasks already
        written then belong to a batch that is never committed, so none of them runs.
        """
        if not specs:
            raise ValueError("a batch needs at least one task")
        if len(specs) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} tasks, got {len(specs)}")
        batch_id = new_task_id()
        prepared = self._producer.prepare(specs, batch=batch_id)
        parts: dict[str, bytes] = {}
        for task_id, _, data, _, _, _ in prepared:
            if task_id in parts:
                raise ValueError(f"task id {task_id} twice in one batch (same idempotency key?)")
            parts[task_id] = part_value(data)
        handles = self._producer.send(prepared)
        if not commit:
            return BatchHandle(batch_id, handles, -1)
        try:
            offset = self._writer().write(batch_id, parts, self.commit_timeout)
        except TxLogError as e:
            raise SubmitError(
                f"batch {batch_id}: {len(handles)} tasks written but the commit failed ({e}); "
                "the batch will be abandoned and none of its tasks will run",
                retriable=e.retriable,
            ) from e
        return BatchHandle(batch_id, handles, offset)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._txlog is not None:
                self._txlog.close(timeout)
                self._txlog = None
