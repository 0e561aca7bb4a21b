"""Committed assignments: records on ``<ns>.assignments`` and the pointer sent in SyncGroup.

The leader publishes generation ``g`` as one part per member (``assign/<g>/<member>``) and a
commit (``commit/<g>``), then sends every member an ``AssignmentPointer`` (generation, commit
offset, leader) in its SyncGroup blob. A member reads the log up to that offset and applies
the generation only if the commit there is complete and consistent (invariant 5).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped, unused-ignore]

from ringleader.coordinator.errors import InconsistentAssignmentError, RingleaderError
from ringleader.coordinator.twophase import Applied, Inconsistent, Unseen
from ringleader.coordinator.txlog import TxLogReader, TxLogWriter, peek_commit
from ringleader.security import KafkaSecurity

KIND = "assign"
PART_VERSION = 1
POINTER_VERSION = 1


class AssignmentDecodeError(RingleaderError, ValueError):
    """An assignment part or pointer blob is not a valid encoding."""


def _unpack_map(data: bytes, what: str) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview) or not data:
        raise AssignmentDecodeError(f"{what} must be non-empty bytes")
    try:
        body = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
    except (ValueError, TypeError) as e:
        raise AssignmentDecodeError(f"{what} is not msgpack: {e}") from e
    if not isinstance(body, dict):
        raise AssignmentDecodeError(f"{what} is not a map")
    v = body.get("v")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise AssignmentDecodeError(f"{what} has no valid schema version: {v!r}")
    return body


def _field(body: Mapping[str, Any], key: str, typ: type, what: str) -> Any:
    val = body.get(key)
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise AssignmentDecodeError(f"{what} field {key!r} must be {typ.__name__}, got {val!r}")
    return val


@dataclass(frozen=True)
class AssignmentPointer:
    """What SyncGroup carries: where the committed generation is in the assignment log."""

    generation: int
    commit_offset: int
    leader_id: str

    def encode(self) -> bytes:
        """Never empty (Tansu fails SyncGroup forever on an empty assignment blob)."""
        body: dict[str, int | str] = {"v": POINTER_VERSION, "g": self.generation}
        body |= {"o": self.commit_offset, "l": self.leader_id}
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def decode(cls, data: bytes) -> AssignmentPointer:
        body = _unpack_map(data, "assignment pointer")
        return cls(
            generation=_field(body, "g", int, "assignment pointer"),
            commit_offset=_field(body, "o", int, "assignment pointer"),
            leader_id=_field(body, "l", str, "assignment pointer"),
        )


@dataclass(frozen=True)
class Assignment:
    """Generation ``generation``'s owners, as decided by ``leader``.

    Every partition has at most one owner; construction refuses anything else. ``protocol``
    is the rebalance protocol the generation runs ("eager" or "cooperative"); ``workers``
    names each member's worker (so a later leader knows who had what across restarts);
    ``revoking`` lists, per member, the partitions it owns and must release in this
    generation (cooperative moves; shown by ``ringleader status``).
    """

    generation: int
    leader: str
    owners: dict[str, list[int]]
    protocol: str = "eager"
    workers: dict[str, str] = field(default_factory=dict)
    revoking: dict[str, list[int]] = field(default_factory=dict)
    static: frozenset[str] = frozenset()  # members with a group.instance.id

    def __post_init__(self) -> None:
        if self.generation < 0:
            raise ValueError(f"generation must be >= 0, got {self.generation}")
        seen: dict[int, str] = {}
        for member, parts in self.owners.items():
            if not member:
                raise ValueError("member ids must be non-empty")
            for p in parts:
                if isinstance(p, bool) or not isinstance(p, int) or p < 0:
                    raise ValueError(f"partition of {member!r} is not a partition: {p!r}")
                if p in seen:
                    raise InconsistentAssignmentError(
                        f"generation {self.generation}: partition {p} owned by both "
                        f"{seen[p]!r} and {member!r}"
                    )
                seen[p] = member

    def partitions_of(self, member_id: str) -> list[int]:
        return list(self.owners.get(member_id, []))

    def by_worker(self) -> dict[str, list[int]]:
        """Worker id -> partitions (members whose worker is not named are left out)."""
        out: dict[str, list[int]] = {}
        for member, parts in self.owners.items():
            worker = self.workers.get(member)
            if worker:
                out.setdefault(worker, []).extend(parts)
        return {w: sorted(ps) for w, ps in out.items()}

    def encode_part(self, member_id: str) -> bytes:
        body: dict[str, Any] = {
            "v": PART_VERSION,
            "g": self.generation,
            "l": self.leader,
            "m": member_id,
            "p": sorted(self.owners[member_id]),
            "rp": self.protocol,
        }
        if member_id in self.workers:
            body["w"] = self.workers[member_id]
        if self.revoking.get(member_id):
            body["r"] = sorted(self.revoking[member_id])
        if member_id in self.static:
            body["s"] = True
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]

    def encode_parts(self) -> dict[str, bytes]:
        """One part per member, keyed by member id."""
        return {m: self.encode_part(m) for m in self.owners}

    @classmethod
    def decode_part(cls, data: bytes) -> Part:
        """One member's part (older parts lack protocol, worker and revoking: eager)."""
        what = "assignment part"
        body = _unpack_map(data, what)
        parts = _partitions(_field(body, "p", list, what), what)
        protocol = body.get("rp", "eager")
        if protocol not in ("eager", "cooperative"):
            raise AssignmentDecodeError(f"{what} has an unknown protocol: {protocol!r}")
        worker = body.get("w")
        if worker is not None and not isinstance(worker, str):
            raise AssignmentDecodeError(f"{what} has a bad worker id: {worker!r}")
        revoking = _partitions(body.get("r", []), what)
        static = body.get("s", False) is True
        return Part(
            _field(body, "g", int, what),
            _field(body, "l", str, what),
            _field(body, "m", str, what),
            parts,
            protocol,
            worker,
            revoking,
            static,
        )

    @classmethod
    def from_parts(cls, parts: Mapping[str, bytes]) -> Assignment:
        """Rebuild from committed parts; every part must agree on generation, leader and
        protocol."""
        first: Part | None = None
        owners: dict[str, list[int]] = {}
        workers: dict[str, str] = {}
        revoking: dict[str, list[int]] = {}
        static: set[str] = set()
        for name in sorted(parts):
            part = cls.decode_part(parts[name])
            if part.member != name:
                raise InconsistentAssignmentError(f"part {name!r} is for member {part.member!r}")
            if first is None:
                first = part
            elif part.agreement != first.agreement:
                raise InconsistentAssignmentError(
                    f"parts disagree: generation/leader/protocol {part.agreement} vs "
                    f"{first.agreement}"
                )
            owners[name] = part.partitions
            if part.worker:
                workers[name] = part.worker
            if part.revoking:
                revoking[name] = part.revoking
            if part.static:
                static.add(name)
        if first is None:
            raise InconsistentAssignmentError("an assignment has no parts")
        return cls(
            first.generation,
            first.leader,
            owners,
            first.protocol,
            workers,
            revoking,
            frozenset(static),
        )


@dataclass(frozen=True)
class Part:
    """One member's record of a committed assignment."""

    generation: int
    leader: str
    member: str
    partitions: list[int]
    protocol: str = "eager"
    worker: str | None = None
    revoking: list[int] = field(default_factory=list)
    static: bool = False

    @property
    def agreement(self) -> tuple[int, str, str]:
        """What every part of one generation must share."""
        return (self.generation, self.leader, self.protocol)


def _partitions(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in value
    ):
        raise AssignmentDecodeError(f"{what} has bad partitions: {value!r}")
    return value


class AssignmentLog:
    """Publishes and reads committed assignments on a one-partition topic.

    The reader is created on first ``read`` and kept open, so successive reads continue
    where the last stopped. With ``jump`` (default) the first read does not replay the whole
    log (it is never compacted): it peeks at the pointer's commit record, which names the
    offset of its first part, and starts there; a later pointer to a generation whose parts
    lie before that point makes it go back (``Unseen``) rather than misjudge it. The topic
    must exist (``coordinator.topics.ensure_topic``).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        start_offset: int = 0,
        producer_config: Mapping[str, str] | None = None,
        jump: bool = True,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.jump = jump
        self.topic = topic
        self.start_offset = start_offset
        self._producer_config = producer_config
        self._writer: TxLogWriter | None = None
        self._reader: TxLogReader | None = None
        self.last_reason: str | None = None  # why the last read returned None

    @property
    def writer(self) -> TxLogWriter:
        if self._writer is None:
            self._writer = TxLogWriter(
                self.bootstrap, self.topic, KIND, self._producer_config, security=self.security
            )
        return self._writer

    @property
    def reader(self) -> TxLogReader:
        if self._reader is None:
            self._reader = self._new_reader(self.start_offset)
        return self._reader

    def _new_reader(self, offset: int) -> TxLogReader:
        return TxLogReader(
            self.bootstrap, self.topic, KIND, start_offset=offset, security=self.security
        )

    def publish(
        self,
        generation: int,
        leader_id: str,
        owners: Mapping[str, Sequence[int]],
        timeout: float,
    ) -> AssignmentPointer:
        """Write every member's part and then the commit; return the SyncGroup pointer."""
        a = Assignment(generation, leader_id, {m: sorted(ps) for m, ps in owners.items()})
        return self.publish_assignment(a, timeout)

    def publish_assignment(self, a: Assignment, timeout: float) -> AssignmentPointer:
        """Write `a`'s parts and then the commit; return the SyncGroup pointer."""
        offset = self.writer.write(str(a.generation), a.encode_parts(), timeout)
        return AssignmentPointer(a.generation, offset, a.leader)

    def publish_parts_only(self, a: Assignment, timeout: float) -> int:
        """Write the parts but no commit (a leader dying mid-publish); offset of last part."""
        return self.writer.write_parts_only(str(a.generation), a.encode_parts(), timeout)

    def read(self, pointer: AssignmentPointer, timeout: float) -> Assignment | None:
        """The generation the pointer names, or None if it is not committed consistently.

        Raises ``TxLogError`` (retriable) if the log cannot be read up to the pointer in time.
        """
        self.last_reason = None
        if pointer.commit_offset < self.start_offset:
            self.last_reason = f"offset {pointer.commit_offset} is before this log's start"
            return None
        outcome = self._outcome(pointer, timeout)
        if isinstance(outcome, Unseen):  # cannot happen unless the record lies
            self.last_reason = f"generation {outcome.txid}: parts not found"
            return None
        if outcome is None:
            self.last_reason = f"no commit record at offset {pointer.commit_offset}"
            return None
        if not isinstance(outcome, Applied):
            self.last_reason = f"generation {outcome.txid} inconsistent: {outcome.reason}"
            return None
        return self._judge(pointer, outcome)

    def _outcome(
        self, pointer: AssignmentPointer, timeout: float
    ) -> Applied | Inconsistent | Unseen | None:
        """Read up to the pointer's commit record; what it decided (None: no commit there)."""
        deadline = time.monotonic() + timeout
        off = pointer.commit_offset
        fresh = self._reader is None
        if fresh or (
            self.reader.outcome_at(off) is None and off < self.reader.assembler.start_offset
        ):
            # Not read, and not ahead of where this reader reads: start at the commit's first
            # part (the commit record names it) instead of replaying the uncompacted log.
            first = self.start_offset
            if self.jump and off > self.start_offset:
                rec = peek_commit(
                    self.bootstrap, self.topic, KIND, off, timeout, security=self.security
                )
                if rec is not None and rec.first_offset >= self.start_offset:
                    first = rec.first_offset
            if fresh:
                self._reader = self._new_reader(first)
            else:
                self.reader.seek(first)
            timeout = max(0.0, deadline - time.monotonic())
        self.reader.read_until(off, timeout)
        outcome = self.reader.outcome_at(off)
        if isinstance(outcome, Unseen):
            # Its parts precede where this reader jumped in: go back and read them.
            self.reader.seek(max(outcome.first_offset, self.start_offset))
            self.reader.read_until(off, max(0.0, deadline - time.monotonic()))
            outcome = self.reader.outcome_at(off)
        return outcome

    def _judge(self, pointer: AssignmentPointer, outcome: Applied) -> Assignment | None:
        """The committed assignment, if it is the one the pointer names and is well formed."""
        if outcome.txid != str(pointer.generation):
            self.last_reason = (
                f"commit at offset {pointer.commit_offset} is for generation {outcome.txid}, "
                f"not {pointer.generation}"
            )
            return None
        try:
            a = Assignment.from_parts(outcome.parts)
        except (ValueError, InconsistentAssignmentError) as e:
            self.last_reason = f"generation {pointer.generation} invalid: {e}"
            return None
        if a.generation != pointer.generation or a.leader != pointer.leader_id:
            self.last_reason = (
                f"committed generation {a.generation} by {a.leader!r} does not match pointer "
                f"({pointer.generation}, {pointer.leader_id!r})"
            )
            return None
        return a

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader is not None:
            self._reader.close()
