"""The worker's per-partition book: pure state, no locks, no I/O, no clock.

For each partition the worker holds it keeps an *epoch* (a number that changes every time the
partition is (re)assigned, so work fetched under an older assignment is recognised and
dropped), the `OffsetTracker` of started and completed offsets, the last committed position,
whether it is being revoked, and how many of its tasks are in flight (started by a handler,
completion not yet recorded). Tasks of 2PC batches whose commit has not been seen are parked
here by batch id.

The threads of a worker call it under one lock (`worker.runtime` owns that lock); tests drive
it directly, the way tests/coordinator/test_membership.py drives `Membership`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ringleader.worker.envelope import Envelope
from ringleader.worker.offsets import OffsetTracker
from ringleader.worker.queues import QueuedTask

__all__ = [
    "Claim",
    "Commit",
    "Fetched",
    "Ingested",
    "PartitionBook",
    "RawRecord",
    "Revocation",
    "Undecodable",
]


class Claim(Enum):
    CLAIMED = "claimed"  # start it; it is counted in flight
    STALE = "stale"  # its partition was revoked or reassigned since it was fetched: drop it
    WAIT = "wait"  # the session lease lapsed: ask again shortly (a revoke drops it)


@dataclass(slots=True)
class Fetched(QueuedTask):
    """A queued task tagged with the assignment epoch of its partition."""

    epoch: int = 0


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A fetched record, decoded (`envelope`) or not (`reason` says why), and whether its task
    is already recorded as completed."""

    partition: int
    offset: int
    raw: bytes
    envelope: Envelope | None
    reason: str | None = None
    completed: bool = False


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record to dead-letter as raw bytes; its offset is already done in the book (the dead
    letter is settled before any commit)."""

    partition: int
    offset: int
    raw: bytes
    reason: str


@dataclass(slots=True)
class Ingested:
    """What `PartitionBook.ingest` sorted a fetch into."""

    ready: list[Fetched] = field(default_factory=list)  # for the scheduling queue
    undecodable: list[Undecodable] = field(default_factory=list)
    skipped: int = 0  # already completed: done at once


@dataclass(frozen=True, slots=True)
class Revocation:
    """Partitions being revoked, each with the epoch it had: later calls touch only those
    epochs, so a partition assigned again meanwhile is left alone."""

    epochs: Mapping[int, int]
    generation: int
    member_id: str

    @property
    def partitions(self) -> list[int]:
        return sorted(self.epochs)


@dataclass(frozen=True, slots=True)
class Commit:
    """Positions to commit, fenced by the generation and member id that held them."""

    offsets: Mapping[int, int]
    epochs: Mapping[int, int]
    generation: int
    member_id: str


@dataclass(slots=True)
class _Partition:
    epoch: int
    tracker: OffsetTracker
    committed: int | None
    revoked: bool = False
    inflight: int = 0
    started: dict[int, float] = field(default_factory=dict)  # running: offset -> start time


class PartitionBook:
    """Everything a worker knows about the partitions it holds. Not thread-safe."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}
        self._epoch = 0
        self._generation = -1
        self._member_id = ""
        self._parked: dict[str, list[Fetched]] = {}
        self.parked_count = 0

    # ---- assignment -------------------------------------------------------------------

    def hold(self, generation: int, member_id: str) -> None:
        """The member applied `generation`: commits are fenced by it from now on."""
        self._generation = generation
        self._member_id = member_id

    @property
    def generation(self) -> int:
        return self._generation

    def assign(self, committed: Mapping[int, int | None]) -> dict[int, int | None]:
        """Start tracking each partition from its committed position (None: from the start).
        Returns the partitions newly taken, with the position to fetch from; one already held
        (and not being revoked) is left as it is."""
        started: dict[int, int | None] = {}
        for p, pos in committed.items():
            old = self._parts.get(p)
            if old is not None and not old.revoked:
                continue
            self._epoch += 1
            self._parts[p] = _Partition(self._epoch, OffsetTracker(pos), pos)
            started[p] = pos
        return started

    def active(self) -> list[int]:
        """Partitions held and not being revoked."""
        return sorted(p for p, st in self._parts.items() if not st.revoked)

    def revoke(self, partitions: Iterable[int]) -> Revocation:
        """Stop starting tasks of these partitions (their parked batch tasks are dropped)."""
        wanted = set(partitions)
        epochs: dict[int, int] = {}
        for p in wanted:
            st = self._parts.get(p)
            if st is not None:
                st.revoked = True
                epochs[p] = st.epoch
        self._drop_parked(wanted)
        return Revocation(epochs, self._generation, self._member_id)

    def inflight(self, rev: Revocation) -> dict[int, int]:
        """In-flight counts of the revoked partitions that still have some."""
        return {p: st.inflight for p, st in self._states(rev) if st.inflight}

    def drained(self, rev: Revocation) -> bool:
        return not self.inflight(rev)

    def forget(self, rev: Revocation) -> None:
        """The revoked partitions are handed on: drop what the book held for them."""
        for p, _ in self._states(rev):
            del self._parts[p]

    def _states(self, rev: Revocation) -> list[tuple[int, _Partition]]:
        return [
            (p, st)
            for p, epoch in rev.epochs.items()
            if (st := self._parts.get(p)) is not None and st.epoch == epoch
        ]

    # ---- fetching ---------------------------------------------------------------------

    def ingest(self, records: Sequence[RawRecord]) -> Ingested:
        """Track fetched records: tasks to queue, records to dead-letter, completed ones
        skipped, batch tasks parked. Records of partitions not held are ignored."""
        out = Ingested()
        for r in records:
            st = self._parts.get(r.partition)
            if st is None or st.revoked:
                continue
            try:
                st.tracker.mark_started(r.offset)
            except ValueError:
                continue  # fetched twice (a seek raced a fetch): already tracked
            if r.envelope is None:
                out.undecodable.append(
                    Undecodable(r.partition, r.offset, r.raw, r.reason or "undecodable envelope")
                )
                st.tracker.mark_done(r.offset)
            elif r.completed:
                out.skipped += 1
                st.tracker.mark_done(r.offset)
            else:
                task = Fetched(r.envelope, r.partition, r.offset, r.raw, st.epoch)
                if r.envelope.batch is None:
                    out.ready.append(task)
                else:
                    self._parked.setdefault(r.envelope.batch, []).append(task)
                    self.parked_count += 1
        return out

    # ---- running ----------------------------------------------------------------------

    def claim(self, task: Fetched, lease_valid: bool, now: float = 0.0) -> Claim:
        """May this task start? Counts it in flight if so. `lease_valid` is the member's
        session lease, read by the caller under the same lock, so a revoke cannot slip in
        between. A task whose partition is still held but whose lease has lapsed (a late
        heartbeat) must wait, not be dropped: its offset would stay pending for good."""
        st = self._parts.get(task.partition)
        if st is None or st.revoked or st.epoch != task.epoch:
            return Claim.STALE
        if not lease_valid:
            return Claim.WAIT
        st.inflight += 1
        st.started[task.offset] = now
        return Claim.CLAIMED

    def adopt(self, task: Fetched) -> bool:
        """Count a task in flight that no handler claimed (a parked batch task being
        dead-lettered), even while its partition is being revoked; False once handed on."""
        st = self._parts.get(task.partition)
        if st is None or st.epoch != task.epoch:
            return False
        st.inflight += 1
        return True

    def release(self, task: Fetched) -> None:
        """A claimed task ended without a completion to record (a retry, a park)."""
        st = self._parts.get(task.partition)
        if st is not None and st.epoch == task.epoch:
            st.inflight -= 1
            st.started.pop(task.offset, None)

    def recorded(self, task: Fetched) -> None:
        """A claimed (or adopted) task's completion is recorded: its offset is done."""
        st = self._parts.get(task.partition)
        if st is not None and st.epoch == task.epoch:
            st.tracker.mark_done(task.offset)
            st.inflight -= 1
            st.started.pop(task.offset, None)

    # ---- committing -------------------------------------------------------------------

    def due_commit(self) -> Commit:
        """Positions that moved since the last commit, of partitions not being revoked."""
        offsets = {
            p: pos
            for p, st in self._parts.items()
            if not st.revoked
            and (pos := st.tracker.committable()) is not None
            and pos != st.committed
        }
        epochs = {p: self._parts[p].epoch for p in offsets}
        return Commit(offsets, epochs, self._generation, self._member_id)

    def revoked_commit(self, rev: Revocation) -> Commit:
        """The final positions of revoked partitions, fenced by the generation they had."""
        offsets = {
            p: pos
            for p, st in self._states(rev)
            if (pos := st.tracker.committable()) is not None and pos != st.committed
        }
        epochs = {p: rev.epochs[p] for p in offsets}
        return Commit(offsets, epochs, rev.generation, rev.member_id)

    def committed(self, commit: Commit, accepted: Iterable[int]) -> None:
        """The broker accepted these partitions of `commit`."""
        for p in accepted:
            st = self._parts.get(p)
            if st is not None and st.epoch == commit.epochs.get(p):
                st.committed = commit.offsets[p]

    # ---- parked batch tasks -----------------------------------------------------------

    def parked_batches(self) -> list[str]:
        return list(self._parked)

    def take_batch(self, batch_id: str) -> list[Fetched]:
        """The parked tasks of a batch that was decided (committed or abandoned)."""
        tasks = self._parked.pop(batch_id, [])
        self.parked_count -= len(tasks)
        return tasks

    def _drop_parked(self, partitions: set[int]) -> None:
        for bid in list(self._parked):
            tasks = self._parked[bid]
            keep = [t for t in tasks if t.partition not in partitions]
            self.parked_count -= len(tasks) - len(keep)
            if keep:
                self._parked[bid] = keep
            else:
                del self._parked[bid]

    # ---- reporting --------------------------------------------------------------------

    def busy(self, now: float) -> dict[int, int]:
        """Partitions with a running task: whole seconds the oldest of them has run."""
        return {
            p: max(0, int(now - min(st.started.values())))
            for p, st in sorted(self._parts.items())
            if st.started
        }

    def positions(self) -> dict[int, tuple[int | None, int | None, int, int]]:
        """Per partition: committed, committable, outstanding, in flight."""
        return {
            p: (st.committed, st.tracker.committable(), st.tracker.outstanding, st.inflight)
            for p, st in sorted(self._parts.items())
        }
