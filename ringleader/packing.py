"""Task specs packed into envelope bytes: the producer's hot path, shared by `Client.submit_many`
and `BatchWriter` (through `TaskProducer.prepare`).

Pure: no broker, no Redis. The partition count for keyed tasks is asked of a callable, only
when the first key is met (answering it may contact the broker).

Idempotency keys: a task submitted with `idempotency_key=K` gets the task id
`uuid5(namespace, K)`, the same on every submission of K in that namespace (see
`ringleader.client`).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, NoReturn

import msgpack

from ringleader.worker.envelope import SCHEMA_VERSION
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge
from ringleader.worker.lanes import Level
from ringleader.worker.routing import partition_for

__all__ = [
    "EnvelopePieces",
    "Prepared",
    "TaskSpec",
    "as_spec",
    "due_time",
    "idempotent_task_id",
    "pack",
]

# (task id, task name, envelope bytes, record key, explicit partition or None, priority level
# (`worker.lanes.Level`: which task topic)). A plain tuple, not a NamedTuple: building one
# costs a Python-level __new__ per task on the hot path.
Prepared = tuple[str, str, bytes, bytes | None, int | None, int]

# isinstance(x, str) without a Python frame per key (the submit path checks every kwarg key).
_is_str = str.__instancecheck__

_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


class TaskSpec(NamedTuple):
    """One task for `submit_many` / `submit_batch` (a Mapping with these keys also works).

    A NamedTuple: cheap to build by the thousand (a frozen dataclass costs ~10x more).
    """

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = _NO_KWARGS
    key: str | bytes | None = None
    priority: int = 0
    idempotency_key: str | None = None
    not_before: float | None = None


_SPEC_FIELDS = frozenset(TaskSpec._fields)
_WHEN_FIELDS = frozenset({"countdown", "eta"})


def due_time(countdown: float | None, eta: datetime | None, now: float) -> float | None:
    """Epoch seconds a task may start at: `countdown` seconds from `now`, or `eta` (a
    timezone-aware datetime); None for at once. Raises EnvelopeError for a bad value."""
    if countdown is not None and eta is not None:
        raise EnvelopeError("give countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float):
            raise EnvelopeError(f"countdown must be a number of seconds, got {countdown!r}")
        if not (countdown >= 0 and math.isfinite(countdown)):
            raise EnvelopeError(f"countdown must be >= 0 seconds, got {countdown!r}")
        return now + float(countdown)
    if eta is not None:
        if not isinstance(eta, datetime):
            raise EnvelopeError(f"eta must be a datetime, got {type(eta).__name__}")
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise EnvelopeError("eta must be timezone-aware (e.g. datetime.now(timezone.utc))")
        return eta.timestamp()
    return None


def as_spec(spec: TaskSpec | Mapping[str, Any]) -> TaskSpec:
    if isinstance(spec, TaskSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"a task spec must be a TaskSpec or a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - _SPEC_FIELDS - _WHEN_FIELDS)
    if unknown:
        allowed = sorted(_SPEC_FIELDS | _WHEN_FIELDS)
        raise TypeError(f"unknown task spec fields {unknown}; allowed: {allowed}")
    if "name" not in spec:
        raise TypeError("a task spec needs a 'name'")
    if _WHEN_FIELDS & spec.keys():
        fields = {k: v for k, v in spec.items() if k not in _WHEN_FIELDS}
        due = due_time(spec.get("countdown"), spec.get("eta"), time.time())
        return TaskSpec(**{**fields, "not_before": due})
    return TaskSpec(**spec)


def idempotent_task_id(namespace: str, idempotency_key: str) -> str:
    """The task id every submission with this key gets in this namespace."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ringleader:{namespace}:{idempotency_key}").hex


class EnvelopePieces:
    """The msgpack of an envelope map, in `worker.envelope.encode`'s key order, from cached
    pieces: a fixmap header, then each key followed by its value. Within one `pack` call only
    id, args and kwargs differ between the common tasks (the name's piece is cached per name,
    the tail of priority .. not_before per priority when there is no idempotency key or
    not_before)."""

    def __init__(self, packb: Callable[[Any], bytes], batch: str | None, now: float) -> None:
        self._packb = packb
        self._batch = batch
        self._now = now
        self._head = b"\x8b" + packb("v") + packb(SCHEMA_VERSION) + packb("id")  # 11 keys
        self._kwargs_key = packb("kwargs")
        self._names: dict[str, bytes] = {}
        self._tails: dict[int, bytes] = {}

    def _tail(self, priority: int, ikey: str | None, nb: float | None) -> bytes:
        p = self._packb
        return b"".join(
            (
                p("priority"),
                p(priority),
                p("attempt"),
                p(1),
                p("idempotency_key"),
                p(ikey),
                p("batch"),
                p(self._batch),
                p("submitted_at"),
                p(self._now),
                p("not_before"),
                p(nb),
            )
        )

    def envelope(
        self,
        task_id: str,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        priority: int,
        ikey: str | None,
        nb: float | None,
    ) -> bytes:
        p = self._packb
        name_piece = self._names.get(name)
        if name_piece is None:
            name_piece = self._names[name] = p("name") + p(name) + p("args")
        if ikey is None and nb is None:
            tail = self._tails.get(priority)
            if tail is None:
                tail = self._tails[priority] = self._tail(priority, None, None)
        else:
            tail = self._tail(priority, ikey, nb)
        return b"".join(
            (self._head, p(task_id), name_piece, p(args), self._kwargs_key, p(kwargs), tail)
        )


def pack(
    specs: Sequence[TaskSpec],
    *,
    namespace: str,
    max_payload_bytes: int,
    batch: str | None,
    partitions: Callable[[], int],
) -> list[Prepared]:
    """(task id, name, envelope bytes, record key, explicit partition, level) of each spec.

    Envelopes are packed byte for byte as `worker.envelope.encode` writes them (a test holds
    the two together), with its checks: a bad spec raises EnvelopeError (PayloadTooLarge for
    one over the limit) naming it, before anything is produced. `partitions` is called once,
    at the first keyed spec.
    """
    count: int | None = None
    packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
    pieces = EnvelopePieces(packb, batch, time.time())
    block = os.urandom(16 * len(specs)).hex()  # one syscall for every task id
    out: list[Prepared] = []
    append = out.append
    for i, spec in enumerate(specs):
        name, args, kwargs, key, priority, ikey, nb = spec
        # One test for the common spec (list args, dict kwargs, nothing optional); anything
        # else is checked and normalised off the hot path.
        if (
            type(name) is not str
            or type(args) is not list
            or type(kwargs) is not dict
            or type(priority) is not int
            or key is not None
            or ikey is not None
            or nb is not None
            or not name
        ):
            name, args, kwargs, key, ikey, nb = _normalised(specs, i)
        if kwargs and not all(map(_is_str, kwargs)):
            _bad(specs, i, "kwargs must be a dict with string keys")
        task_id = (
            block[32 * i : 32 * i + 32] if ikey is None else idempotent_task_id(namespace, ikey)
        )
        try:
            data = pieces.envelope(task_id, name, args, kwargs, priority=priority, ikey=ikey, nb=nb)
        except (TypeError, ValueError, OverflowError) as e:
            _bad(specs, i, f"not msgpack-serialisable: {e}")
        if len(data) > max_payload_bytes:
            raise _too_large(specs, i, len(data), max_payload_bytes)
        part = None
        if key is not None:
            if count is None:
                count = partitions()
            part = partition_for(key, count)
        level = 0 if not priority else Level.HIGH if priority > 0 else Level.LOW
        append((task_id, name, data, key, part, level))
    return out


_Normalised = tuple[str, list[Any], dict[str, Any], bytes | None, str | None, float | None]


def _normalised(specs: Sequence[TaskSpec], i: int) -> _Normalised:
    """Spec `i` checked field by field: args as a list, kwargs as a dict, key as bytes,
    not_before as a float; raises EnvelopeError naming the task and the field."""
    s = specs[i]
    if type(s.name) is not str or not s.name:
        _bad(specs, i, f"name must be a non-empty string, got {s.name!r}")
    if not isinstance(s.args, list | tuple):
        _bad(specs, i, f"args must be a list, got {type(s.args).__name__}")
    if not isinstance(s.kwargs, Mapping):
        _bad(specs, i, f"kwargs must be a dict, got {type(s.kwargs).__name__}")
    if type(s.priority) is not int:
        _bad(specs, i, f"priority must be an int, got {s.priority!r}")
    ikey = s.idempotency_key
    if ikey is not None and (type(ikey) is not str or not ikey):
        _bad(specs, i, "idempotency_key must be a non-empty string")
    nb = s.not_before
    if nb is not None:
        if isinstance(nb, bool) or not isinstance(nb, int | float):
            _bad(specs, i, "not_before must be epoch seconds (a number)")
        nb = float(nb)
    return s.name, list(s.args), dict(s.kwargs), _key_bytes(specs, i), ikey, nb


def _key_bytes(specs: Sequence[TaskSpec], i: int) -> bytes | None:
    key = specs[i].key
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    _bad(specs, i, f"key must be str or bytes, got {type(key).__name__}")


def _where(specs: Sequence[TaskSpec], i: int) -> str:
    name = specs[i].name
    return f"task {i} ({name!r})" if len(specs) > 1 else f"task {name!r}"


def _bad(specs: Sequence[TaskSpec], i: int, why: str) -> NoReturn:
    raise EnvelopeError(f"{_where(specs, i)}: {why}")


def _too_large(specs: Sequence[TaskSpec], i: int, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(size, limit, where=_where(specs, i))
