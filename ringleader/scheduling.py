"""Tasks submitted for later: parked in Redis until their time, never on the topic before.

`Client.submit(..., countdown=, eta=)` and `submit_many` send tasks due now to the broker as
usual and park the others in the namespace's delayed set (`worker.delayed.DelayedSet`, the
one retries wait in) with status `scheduled`. The group leader's keeper moves each onto its
partition when it is due, produce first and forget second, so a leader that dies halfway
leaves it to the next leader; a copy that arrives twice is skipped by the ledger (already
completed, or running elsewhere). While waiting a task holds back no offset, takes no
worker's memory and survives every worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ringleader.handles import ResultSource, SubmitError, TaskHandle
from ringleader.packing import Prepared
from ringleader.worker.delayed import DelayedSet, Scheduled
from ringleader.worker.lanes import partition_of
from ringleader.worker.results import ResultStore

__all__ = ["SCHEDULE_AFTER", "schedule", "split_due"]

# A task due sooner than this goes to the broker at once (the worker waits for its time).
SCHEDULE_AFTER = 0.5


def split_due(due: Sequence[float | None], now: float) -> tuple[list[int], list[int]]:
    """Indices of the tasks to send now, and of those to park (due later than SCHEDULE_AFTER)."""
    later = [i for i, d in enumerate(due) if d is not None and d - now > SCHEDULE_AFTER]
    if not later:
        return list(range(len(due))), []
    parked = set(later)
    return [i for i in range(len(due)) if i not in parked], later


def schedule(
    source: ResultSource,
    store: ResultStore,
    items: Sequence[tuple[Prepared, float]],
    lane_of: Callable[[int | None, int], int],
    result_ttl: float,
) -> list[TaskHandle]:
    """Park `items` (a prepared task and its due time) in one round trip; their handles."""
    now = time.time()
    delayed = DelayedSet(store.client, store.prefix)
    entries: list[Scheduled] = []
    handles: list[TaskHandle] = []
    for (task_id, name, data, _key, keyed, level), due in items:
        lane_ = lane_of(keyed, level)  # the keeper puts it on this level's partition
        done, status, _, _, _ = store.task_keys(task_id)
        entries.append(Scheduled(task_id, due, lane_, data, done, status))
        handles.append(TaskHandle(source, task_id, name, partition_of(lane_)))
    # The status outlives the wait: `scheduled` must still be there at the due time.
    latest = max(due for _, due in items)
    ttl_ms = max(1, round((max(0.0, latest - now) + result_ttl) * 1000))
    try:
        delayed.schedule(entries, ttl_ms)
    except Exception as e:
        raise SubmitError(f"cannot park {len(entries)} delayed task(s) in Redis: {e}") from e
    return handles
