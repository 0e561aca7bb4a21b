"""The worker's one offset committer: reads and commits its partitions' positions.

One group-coordinator connection serves every offset request of the worker (the positions
read when partitions are assigned, the periodic commit, the final commit on revoke), so the
threads that use it take turns. Commits are fenced by the generation and member id that held
the partitions (OffsetCommit carries both; a broker that knows the generation is stale
refuses). Dead letters must be acknowledged before an offset past them is committed: the
`settle` hook waits for that.

Positions are kept per lane (`worker.lanes`: a partition of one priority level's topic); each
request goes to one topic, so a namespace that uses only the default level sends what it did
before.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from confluent_kafka import KafkaException

from ringleader.coordinator.errors import ErrorCode, RingleaderError
from ringleader.coordinator.settings import MemberSettings
from ringleader.coordinator.wire import GroupClient
from ringleader.security import KafkaSecurity
from ringleader.worker.book import Commit, PartitionBook, Revocation
from ringleader.worker.lanes import LaneTopics, Level, lane, level_of, partition_of

log = logging.getLogger("ringleader.worker.committer")

IO_ERRORS = (RingleaderError, KafkaException, OSError)
T = TypeVar("T")


class Holder(Protocol):
    """What the committer asks the member: which generation and partitions it holds now."""

    @property
    def generation(self) -> int: ...

    @property
    def assigned(self) -> tuple[int, ...]: ...


class OffsetCommitter:
    def __init__(
        self,
        bootstrap: str,
        settings: MemberSettings,
        topic: str,
        *,
        book: PartitionBook,
        lock: threading.Condition,
        holder: Holder,
        settle: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
        security: KafkaSecurity | None = None,
    ) -> None:
        self._settings = settings
        self._lanes = LaneTopics(topic)
        self._book = book
        self._lock = lock
        self._holder = holder
        self._settle = settle
        self._clock = clock
        self._client = GroupClient(
            bootstrap,
            settings.group_id,
            client_id=f"{settings.client_id}-offsets",
            connect_timeout=settings.connect_timeout,
            security=security,
        )
        self._turn = threading.Lock()

    def read(self, lanes: Sequence[int], timeout: float) -> dict[int, int | None]:
        """The committed position of each lane (None where nothing is committed)."""
        out: dict[int, int | None] = {}
        for level, parts in _by_level(lanes).items():
            fetched = self._call(
                functools.partial(
                    GroupClient.fetch_offsets,
                    topic=self._lanes.topic(level),
                    partitions=parts,
                    timeout=timeout,
                ),
                timeout,
            )
            for p, po in fetched.items():
                out[lane(level, p)] = po.offset if po.offset >= 0 else None
        return out

    def commit_due(self) -> None:
        """Commit the positions that moved, of partitions the member still holds in the
        generation they were fetched under (a revoke commits its own)."""
        with self._lock:
            commit = self._book.due_commit()
        if not commit.offsets:
            return
        holder = self._holder
        held = {partition_of(ln) for ln in commit.offsets}
        if holder.generation != commit.generation or not held <= set(holder.assigned):
            return
        if not self._settle(2.0):
            log.warning("dead letters unacknowledged; commit postponed")
            return
        try:
            self._send(commit, self._settings.request_timeout)
        except IO_ERRORS as e:
            log.warning("offset commit failed: %s", e)

    def commit_revoked(self, rev: Revocation, deadline: float) -> None:
        """Commit revoked partitions' final positions, fenced by the generation they had
        (the member no longer holds them)."""
        with self._lock:
            commit = self._book.revoked_commit(rev)
        if not commit.offsets or commit.generation < 0 or not commit.member_id:
            return
        if not self._settle(max(0.5, deadline - self._clock())):
            log.warning("revoke: dead letters unacknowledged; not committing %s", commit.offsets)
            return
        try:
            refused = self._send(commit, max(1.0, min(5.0, deadline - self._clock())))
        except IO_ERRORS as e:
            log.warning("revoke: commit of %s failed: %s", dict(commit.offsets), e)
            return
        if not refused:
            log.info(
                "revoke: committed %s (generation %d)", dict(commit.offsets), commit.generation
            )

    def _send(self, commit: Commit, timeout: float) -> dict[int, str]:
        """OffsetCommit (one per level's topic); records what was accepted in the book,
        returns what was refused, by lane."""
        codes: dict[int, ErrorCode] = {}
        for level, parts in _by_level(commit.offsets).items():
            offsets = {p: commit.offsets[lane(level, p)] for p in parts}
            sent = self._call(
                functools.partial(
                    GroupClient.commit_offsets,
                    generation=commit.generation,
                    member_id=commit.member_id,
                    group_instance_id=self._settings.group_instance_id,
                    topic=self._lanes.topic(level),
                    offsets=offsets,
                    timeout=timeout,
                ),
                timeout,
            )
            codes.update({lane(level, p): code for p, code in sent.items()})
        with self._lock:
            self._book.committed(commit, [p for p, c in codes.items() if c == ErrorCode.NONE])
        refused = {p: c.name for p, c in codes.items() if c != ErrorCode.NONE}
        if refused:
            log.info("offset commit refused for %s", refused)
        return refused

    def _call(self, fn: Callable[[GroupClient], T], timeout: float) -> T:
        """Run a request, finding the coordinator (again) as needed, until `timeout`."""
        deadline = self._clock() + timeout
        last: BaseException | None = None
        with self._turn:
            client = self._client
            while self._clock() < deadline:
                try:
                    if client.coordinator is None:
                        client.find_coordinator(max(0.5, deadline - self._clock()))
                    return fn(client)
                except IO_ERRORS as e:
                    last = e
                    client.coordinator = None
                    time.sleep(0.1)
        raise last if last is not None else TimeoutError("offsets request timed out")

    def close(self) -> None:
        self._client.close()


def _by_level(lanes: Iterable[int]) -> dict[Level, list[int]]:
    """The partitions of each level among `lanes`, default level first."""
    out: dict[Level, list[int]] = {}
    for ln in sorted(lanes):
        out.setdefault(level_of(ln), []).append(partition_of(ln))
    return out
