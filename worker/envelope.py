"""Wire formats of the task topic, the dead-letter topic and the events topic (msgpack).

Every record is a msgpack map with a schema version under "v". Decoding is strict and raises
`EnvelopeError` with the reason; the payload limit is enforced when encoding (at submit) and
again when decoding (a record written by someone else). No pickle anywhere.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ringleader.worker import _wire
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge

SCHEMA_VERSION = 1
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # 1 MiB, like Kafka's default message.max.bytes

_TASK_ID = re.compile(r"[0-9a-f]{32}")


def new_task_id() -> str:
    """A fresh task id: uuid4 as 32 lowercase hex characters."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Envelope:
    """One task submission as it travels on `<ns>.tasks`."""

    id: str
    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    attempt: int = 1  # 1 for the first run; retries count up
    idempotency_key: str | None = None
    batch: str | None = None  # 2PC batch id; None for a plain submission
    submitted_at: float = 0.0  # wall-clock seconds since the epoch
    not_before: float | None = None  # do not start before this wall-clock time

    def next_attempt(self) -> Envelope:
        """The same task, one attempt later."""
        return dataclasses.replace(self, attempt=self.attempt + 1)


_ENVELOPE_KEYS = frozenset(
    {
        "v",
        "id",
        "name",
        "args",
        "kwargs",
        "priority",
        "attempt",
        "idempotency_key",
        "batch",
        "submitted_at",
        "not_before",
    }
)


def _check_size(size: int, max_size: int | None) -> None:
    if max_size is not None and size > max_size:
        raise PayloadTooLarge(size, max_size)


def encode(env: Envelope, max_size: int | None = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Encode an envelope; raises PayloadTooLarge past `max_size` bytes (None: no limit)."""
    _validate(env)
    data = _wire.pack(
        {
            "v": SCHEMA_VERSION,
            "id": env.id,
            "name": env.name,
            "args": env.args,
            "kwargs": env.kwargs,
            "priority": env.priority,
            "attempt": env.attempt,
            "idempotency_key": env.idempotency_key,
            "batch": env.batch,
            "submitted_at": env.submitted_at,
            "not_before": env.not_before,
        }
    )
    _check_size(len(data), max_size)
    return data


def _validate(env: Envelope) -> None:
    """Reject at encode what decode would reject, so a bad submission fails at the caller."""
    what = "envelope"
    if type(env.id) is not str or not _TASK_ID.fullmatch(env.id):
        raise EnvelopeError(f"{what}: id must be 32 lowercase hex characters, got {env.id!r}")
    if type(env.name) is not str or not env.name:
        raise EnvelopeError(f"{what}: name must be a non-empty string, got {env.name!r}")
    if not isinstance(env.args, list | tuple):
        raise EnvelopeError(f"{what}: args must be a list, got {type(env.args).__name__}")
    if not isinstance(env.kwargs, dict) or not all(type(k) is str for k in env.kwargs):
        raise EnvelopeError(f"{what}: kwargs must be a dict with string keys")
    if type(env.priority) is not int:
        raise EnvelopeError(f"{what}: priority must be an int, got {env.priority!r}")
    if type(env.attempt) is not int or env.attempt < 1:
        raise EnvelopeError(f"{what}: attempt must be an int >= 1, got {env.attempt!r}")
    for name in ("idempotency_key", "batch"):
        value = getattr(env, name)
        if value is not None and (type(value) is not str or not value):
            raise EnvelopeError(f"{what}: {name} must be a non-empty string or None")


def decode(data: bytes, max_size: int | None = DEFAULT_MAX_PAYLOAD) -> Envelope:
    """Decode strictly; any deviation raises EnvelopeError (PayloadTooLarge for size)."""
    what = "envelope"
    if isinstance(data, bytes | bytearray | memoryview):
        _check_size(len(data), max_size)
    obj = _wire.unpack_map(data, what, SCHEMA_VERSION)
    _wire.check_keys(obj, _ENVELOPE_KEYS, what)
    task_id = _wire.get_str(obj, "id", what)
    if not _TASK_ID.fullmatch(task_id):
        raise EnvelopeError(f"{what}: id must be 32 lowercase hex characters, got {task_id!r}")
    args = obj["args"]
    if type(args) is not list:
        _wire.fail(what, "args", "an array", args)
    kwargs = obj["kwargs"]
    if type(kwargs) is not dict:
        _wire.fail(what, "kwargs", "a map", kwargs)
    if not all(type(k) is str for k in kwargs):
        raise EnvelopeError(f"{what}: field 'kwargs' must have string keys")
    return Envelope(
        id=task_id,
        name=_wire.get_str(obj, "name", what),
        args=args,
        kwargs=kwargs,
        priority=_wire.get_int(obj, "priority", what),
        attempt=_wire.get_int(obj, "attempt", what, minimum=1),
        idempotency_key=_wire.get_opt_str(obj, "idempotency_key", what),
        batch=_wire.get_opt_str(obj, "batch", what),
        submitted_at=_wire.get_time(obj, "submitted_at", what),
        not_before=_wire.get_opt_time(obj, "not_before", what),
    )


# --- dead letters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What `<ns>.dead-letter` holds: the original bytes untouched, and why and where from."""

    original: bytes
    reason: str
    topic: str
    partition: int
    offset: int
    worker_id: str
    at: float
    task_id: str | None = None  # known when the original decoded
    name: str | None = None
    attempt: int | None = None


_DEAD_LETTER_KEYS = frozenset(
    {
        "v",
        "original",
        "reason",
        "topic",
        "partition",
        "offset",
        "worker_id",
        "at",
        "task_id",
        "name",
        "attempt",
    }
)


def encode_dead_letter(rec: DeadLetterRecord) -> bytes:
    return _wire.pack(
        {
            "v": SCHEMA_VERSION,
            "original": bytes(rec.original),
            "reason": rec.reason,
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
            "worker_id": rec.worker_id,
            "at": rec.at,
            "task_id": rec.task_id,
            "name": rec.name,
            "attempt": rec.attempt,
        }
    )


def decode_dead_letter(data: bytes) -> DeadLetterRecord:
    what = "dead-letter record"
    obj = _wire.unpack_map(data, what, SCHEMA_VERSION)
    _wire.check_keys(obj, _DEAD_LETTER_KEYS, what)
    attempt = obj["attempt"]
    return DeadLetterRecord(
        original=_wire.get_bytes(obj, "original", what),
        reason=_wire.get_str(obj, "reason", what),
        topic=_wire.get_str(obj, "topic", what),
        partition=_wire.get_int(obj, "partition", what, minimum=0),
        offset=_wire.get_int(obj, "offset", what, minimum=0),
        worker_id=_wire.get_str(obj, "worker_id", what),
        at=_wire.get_time(obj, "at", what),
        task_id=_wire.get_opt_str(obj, "task_id", what),
        name=_wire.get_opt_str(obj, "name", what),
        attempt=None if attempt is None else _wire.get_int(obj, "attempt", what, minimum=1),
    )


# --- task events ----------------------------------------------------------------------------


class EventKind(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # an attempt raised (followed by retrying or dead_lettered)
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One line of `<ns>.events`."""

    task_id: str
    name: str
    kind: EventKind
    attempt: int
    at: float
    error: str | None = None
    delay: float | None = None  # seconds until the next attempt; set for RETRYING only
    worker_id: str | None = None


_EVENT_KEYS = frozenset(
    {"v", "task_id", "name", "kind", "attempt", "at", "error", "delay", "worker_id"}
)


def encode_event(ev: TaskEvent) -> bytes:
    if (ev.kind is EventKind.RETRYING) != (ev.delay is not None):
        raise EnvelopeError("task event: delay is set for 'retrying' events and only for them")
    return _wire.pack(
        {
            "v": SCHEMA_VERSION,
            "task_id": ev.task_id,
            "name": ev.name,
            "kind": ev.kind.value,
            "attempt": ev.attempt,
            "at": ev.at,
            "error": ev.error,
            "delay": ev.delay,
            "worker_id": ev.worker_id,
        }
    )


_F64 = struct.Struct(">d")


class EventPacker:
    """`encode_event` for the events of one worker, byte for byte the same (a test holds the
    two together) at about a tenth of the cost: a no-op task produces two events, and their
    encoding was a large part of its time. Pieces that repeat are packed once; the rest by
    hand where msgpack's form is fixed (a 32-character id, a float, a small int), so that
    no shared Packer is used from several threads."""

    def __init__(self, worker_id: str | None) -> None:
        p = _packb
        self._head = b"\x89" + p("v") + p(SCHEMA_VERSION) + p("task_id")  # 9 keys
        self._names: dict[str, bytes] = {}
        self._kinds = {k: p(k.value) + p("attempt") for k in EventKind}
        self._at = p("at")
        self._worker = p("worker_id") + p(worker_id)
        self._plain_tail = p("error") + p(None) + p("delay") + p(None) + self._worker

    def pack(
        self,
        task_id: str,
        name: str,
        kind: EventKind,
        attempt: int,
        at: float,
        *,
        error: str | None = None,
        delay: float | None = None,
    ) -> bytes:
        if (kind is EventKind.RETRYING) != (delay is not None):
            raise EnvelopeError("task event: delay is set for 'retrying' events and only for them")
        name_piece = self._names.get(name)
        if name_piece is None:
            name_piece = self._names[name] = _packb("name") + _packb(name) + _packb("kind")
        if error is None and delay is None:
            tail = self._plain_tail
        else:
            tail = _packb("error") + _packb(error) + _packb("delay") + _packb(delay) + self._worker
        # msgpack's fixed forms: str 8 for a 32-character ASCII id (ids are validated hex),
        # positive fixint for a small attempt, float 64 for a float.
        fixed_id = len(task_id) == 32 and task_id.isascii()
        tid = b"\xd9\x20" + task_id.encode() if fixed_id else _packb(task_id)
        small = type(attempt) is int and 0 <= attempt < 128
        att = bytes((attempt,)) if small else _packb(attempt)
        when = b"\xcb" + _F64.pack(at) if type(at) is float else _packb(at)
        return b"".join((self._head, tid, name_piece, self._kinds[kind], att, self._at, when, tail))


_packb = _wire.pack_value


def decode_event(data: bytes) -> TaskEvent:
    what = "task event"
    obj = _wire.unpack_map(data, what, SCHEMA_VERSION)
    _wire.check_keys(obj, _EVENT_KEYS, what)
    kind_s = _wire.get_str(obj, "kind", what)
    try:
        kind = EventKind(kind_s)
    except ValueError:
        raise EnvelopeError(f"{what}: unknown kind {kind_s!r}") from None
    delay = _wire.get_opt_time(obj, "delay", what)
    if (kind is EventKind.RETRYING) != (delay is not None):
        raise EnvelopeError(f"{what}: delay is set for 'retrying' events and only for them")
    return TaskEvent(
        task_id=_wire.get_str(obj, "task_id", what),
        name=_wire.get_str(obj, "name", what),
        kind=kind,
        attempt=_wire.get_int(obj, "attempt", what, minimum=1),
        at=_wire.get_time(obj, "at", what),
        error=_wire.get_opt_str(obj, "error", what, nonempty=False),
        delay=delay,
        worker_id=_wire.get_opt_str(obj, "worker_id", what),
    )
