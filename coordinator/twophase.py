"""Multi-record two-phase commit over an ordered log: codec and assembler (pure, no I/O).

A transaction ``txid`` of kind ``kind`` is written as one *part* record per named part,
key ``<kind>/<txid>/<part-name>`` with the part's payload as value, then one *commit* record,
key ``commit/<txid>``, whose value names the parts and carries their count and a SHA-256
digest. A reader (``TxAssembler``) buffers parts and applies a transaction only when its
commit arrives and every named part is present and matches the digest — Kafka Connect's
config-topic rule. A writer that dies between parts and commit leaves nothing applied; its
parts linger in the buffer until ``expire`` drops them.

The same code serves assignments (``kind="assign"``, txid = generation, part = member id)
and producer batches (``kind="batch"``). Record keys and values arrive from the network, so
nothing here raises on bad input: a malformed record becomes a ``Skipped`` outcome.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped, unused-ignore]

COMMIT = "commit"
COMMIT_VERSION = 1
DIGEST_SIZE = 32


# ------------------------------------------------------------------ outcomes


@dataclass(frozen=True)
class Applied:
    """A committed transaction whose parts are all present and match the digest."""

    txid: str
    parts: dict[str, bytes]
    commit_offset: int
    first_offset: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Inconsistent:
    """A commit arrived but the parts are missing or do not match: never applied."""

    txid: str
    reason: str
    commit_offset: int = -1


@dataclass(frozen=True)
class Unseen:
    """A commit whose parts begin before the offset this assembler started reading at.

    Missing parts may simply be unread, so the transaction is neither applied nor judged
    inconsistent; a reader that needs it must read again from ``first_offset``.
    """

    txid: str
    commit_offset: int
    first_offset: int


@dataclass(frozen=True)
class Skipped:
    """A record that is not a well-formed part or commit of this kind."""

    offset: int
    reason: str


@dataclass(frozen=True)
class Expired:
    """Buffered parts of a transaction whose commit never came, dropped to bound memory."""

    txid: str
    reason: str
    parts: int


Outcome = Applied | Inconsistent | Unseen | Skipped | Expired


# ------------------------------------------------------------------ codec


def _check_segment(what: str, value: str, allow_slash: bool) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if not allow_slash and "/" in value:
        raise ValueError(f"{what} must not contain '/', got {value!r}")


def part_key(kind: str, txid: str, name: str) -> str:
    """Key of a part record; ``kind`` and ``txid`` may not contain '/', the name may."""
    _check_segment("kind", kind, False)
    if kind == COMMIT:
        raise ValueError(f"kind {COMMIT!r} is reserved for commit records")
    _check_segment("txid", txid, False)
    _check_segment("part name", name, True)
    return f"{kind}/{txid}/{name}"


def commit_key(txid: str) -> str:
    _check_segment("txid", txid, False)
    return f"{COMMIT}/{txid}"


def digest(parts: Mapping[str, bytes]) -> bytes:
    """SHA-256 over the parts sorted by name, each length-framed so the encoding is unique."""
    h = hashlib.sha256()
    for name in sorted(parts):
        raw = name.encode("utf-8")
        payload = bytes(parts[name])
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
        h.update(len(payload).to_bytes(8, "big"))
        h.update(payload)
    return h.digest()


def encode_commit(kind: str, parts: Mapping[str, bytes], first_offset: int = -1) -> bytes:
    """Value of the commit record: kind, part names, count, digest, offset of the first part."""
    body = {
        "v": COMMIT_VERSION,
        "kind": kind,
        "n": len(parts),
        "names": sorted(parts),
        "digest": digest(parts),
        "first": first_offset,
    }
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def encode_parts(kind: str, txid: str, parts: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    """The part records of a transaction, by part name, as (key, value) pairs.

    The commit record follows once they are written: ``commit_key`` with ``encode_commit``,
    which needs the offset the first part was written at.
    """
    return [(part_key(kind, txid, name), bytes(parts[name])) for name in sorted(parts)]


@dataclass(frozen=True)
class CommitRecord:
    kind: str
    count: int
    names: tuple[str, ...]
    digest: bytes
    first_offset: int


def decode_commit(value: bytes) -> CommitRecord:
    """Parse a commit value; raise ValueError saying what is wrong."""
    try:
        body: Any = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except (ValueError, TypeError) as e:
        raise ValueError(f"commit value is not msgpack: {e}") from e
    if not isinstance(body, dict):
        raise ValueError("commit value is not a map")
    v = body.get("v")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"commit value has no valid schema version: {v!r}")
    kind, n, names = body.get("kind"), body.get("n"), body.get("names")
    dig, first = body.get("digest"), body.get("first", -1)
    if not isinstance(kind, str):
        raise ValueError("commit value lacks kind")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"commit value has a bad part count: {n!r}")
    if not isinstance(names, list) or not all(isinstance(x, str) and x for x in names):
        raise ValueError("commit value has bad part names")
    if len(set(names)) != len(names):
        raise ValueError("commit value names a part twice")
    if len(names) != n:
        raise ValueError(f"commit value counts {n} parts but names {len(names)}")
    if not isinstance(dig, bytes) or len(dig) != DIGEST_SIZE:
        raise ValueError("commit value has a bad digest")
    if not isinstance(first, int) or isinstance(first, bool):
        raise ValueError("commit value has a bad first offset")
    return CommitRecord(kind, n, tuple(names), dig, first)


# ------------------------------------------------------------------ assembler


@dataclass
class _Pending:
    parts: dict[str, bytes] = field(default_factory=dict)
    first_offset: int = -1
    last_offset: int = -1


class TxAssembler:
    """Feed records in log order; get back what each record decided.

    ``max_pending`` bounds the number of transactions with parts but no commit yet; beyond
    it the oldest is dropped with an ``Expired`` outcome. Records at offsets already fed are
    ignored, so re-reading a range is harmless. An assembler that starts mid-log
    (``start_offset``) answers ``Unseen`` for a commit with missing parts whose first part
    lies before its start: it cannot tell. A commit for a txid that was already decided
    is judged afresh against parts buffered since (txids such as generations can repeat after
    a coordinator reset; readers should identify a transaction by its commit offset).
    """

    def __init__(self, kind: str, *, max_pending: int = 10_000, start_offset: int = 0) -> None:
        _check_segment("kind", kind, False)
        if kind == COMMIT:
            raise ValueError(f"kind {COMMIT!r} is reserved for commit records")
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.kind = kind
        self.max_pending = max_pending
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self.start_offset = max(start_offset, 0)  # records before this were never fed
        self.position = self.start_offset  # next offset expected

    @property
    def pending(self) -> dict[str, int]:
        """Txids with parts but no commit yet, and how many parts each has."""
        return {txid: len(p.parts) for txid, p in self._pending.items()}

    def feed(self, key: bytes | str | None, value: bytes | None, offset: int) -> list[Outcome]:
        if offset < self.position:
            return []
        self.position = offset + 1
        if key is None:
            return [Skipped(offset, "record has no key")]
        if isinstance(key, bytes | bytearray | memoryview):
            try:
                key = bytes(key).decode("utf-8")
            except UnicodeDecodeError:
                return [Skipped(offset, "record key is not UTF-8")]
        if value is None:
            return [Skipped(offset, f"record {key!r} has no value")]
        value = bytes(value)
        head, _, rest = key.partition("/")
        if head == COMMIT:
            if not rest or "/" in rest:
                return [Skipped(offset, f"malformed commit key {key!r}")]
            return [self._commit(rest, value, offset)]
        if head != self.kind:
            return [Skipped(offset, f"record {key!r} is not of kind {self.kind!r}")]
        txid, _, name = rest.partition("/")
        if not txid or not name:
            return [Skipped(offset, f"malformed part key {key!r}")]
        return self._part(txid, name, value, offset)

    def _part(self, txid: str, name: str, value: bytes, offset: int) -> list[Outcome]:
        pending = self._pending.get(txid)
        if pending is None:
            pending = self._pending[txid] = _Pending(first_offset=offset)
        pending.parts[name] = value  # a rewritten part replaces the earlier one
        pending.last_offset = offset
        out: list[Outcome] = []
        while len(self._pending) > self.max_pending:
            old, dropped = self._pending.popitem(last=False)
            reason = f"more than {self.max_pending} uncommitted transactions"
            out.append(Expired(old, reason, len(dropped.parts)))
        return out

    def _commit(self, txid: str, value: bytes, offset: int) -> Outcome:
        pending = self._pending.pop(txid, None)
        have = pending.parts if pending else {}
        try:
            rec = decode_commit(value)
        except ValueError as e:
            return Inconsistent(txid, f"bad commit record: {e}", offset)
        if rec.kind != self.kind:
            if pending is not None:  # not ours after all: keep the parts buffered
                self._pending[txid] = pending
            return Skipped(offset, f"commit/{txid} is of kind {rec.kind!r}, not {self.kind!r}")
        missing = [n for n in rec.names if n not in have]
        if missing and 0 <= rec.first_offset < self.start_offset:
            return Unseen(txid, offset, rec.first_offset)
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            return Inconsistent(
                txid, f"{len(missing)} of {rec.count} parts missing: {shown}", offset
            )
        parts = {n: have[n] for n in rec.names}
        if digest(parts) != rec.digest:
            return Inconsistent(txid, "parts do not match the commit digest", offset)
        first = pending.first_offset if pending else offset
        return Applied(txid, parts, offset, first)

    def expire(self, older_than_offset: int) -> list[Expired]:
        """Drop pending transactions whose newest part is below ``older_than_offset``."""
        out: list[Expired] = []
        for txid in [t for t, p in self._pending.items() if p.last_offset < older_than_offset]:
            dropped = self._pending.pop(txid)
            reason = f"no commit before offset {older_than_offset}"
            out.append(Expired(txid, reason, len(dropped.parts)))
        return out
