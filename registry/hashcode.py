"""The reconcile hashcode: a readable status count plus an order-independent digest.

Eureka's hashcode is the status count (`DOWN_1_UP_3_`, statuses sorted by name). It is
readable in logs but blind to an instance that changes while keeping its status (a new
address, a new capacity). ringleader keeps it and adds a content digest.

Digest choice: the sum modulo 2**256 of sha256(canonical encoding) of every instance --
a multiset hash (Bellare & Micciancio's AdHash). It is order-independent (addition
commutes) and updatable per instance in O(1): subtract the old instance's term, add the
new one. Sum rather than XOR because XOR cancels pairs (two equal terms vanish) and is
linear over GF(2), so colliding sets are trivial to construct; a sum has neither
property. sha256 rather than Python's `hash()`, which is salted per process and would
differ between the server-side script, the writer and every client.

Everything here is pure; the Redis scripts mirror `add`/`sub` with 16-bit limbs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MODULUS = 1 << 256
ZERO_HEX = "0" * 64


def term(encoded: bytes) -> int:
    """One instance's contribution to the digest."""
    return int.from_bytes(hashlib.sha256(encoded).digest(), "big")


def add(digest: int, t: int) -> int:
    return (digest + t) % MODULUS


def sub(digest: int, t: int) -> int:
    return (digest - t) % MODULUS


def to_hex(value: int) -> str:
    return f"{value % MODULUS:064x}"


def from_hex(text: str) -> int:
    if len(text) != 64:
        raise ValueError(f"digest must be 64 hex chars, got {text!r}")
    return int(text, 16)


def digest_of(encoded: Iterable[bytes]) -> int:
    total = 0
    for e in encoded:
        total = add(total, term(e))
    return total


def status_summary(counts: Mapping[str, int]) -> str:
    """Eureka's readable part: `STATUS_count_` for every non-zero status, sorted by name."""
    return "".join(f"{s}_{n}_" for s, n in sorted(counts.items()) if n > 0)


@dataclass(frozen=True)
class Hashcode:
    """Both parts; two registries reconcile when both are equal."""

    status: str
    digest: str

    def __str__(self) -> str:
        # Readable in a log line; the full digest is still compared by __eq__.
        return f"{self.status}#{self.digest[:12]}"

    @classmethod
    def of(cls, counts: Mapping[str, int], digest: int) -> Hashcode:
        return cls(status_summary(counts), to_hex(digest))


def hashcode_of(encoded_by_status: Iterable[tuple[str, bytes]]) -> Hashcode:
    """Hashcode of a whole registry given (status, canonical encoding) pairs."""
    counts: dict[str, int] = {}
    total = 0
    for status, enc in encoded_by_status:
        counts[status] = counts.get(status, 0) + 1
        total = add(total, term(enc))
    return Hashcode.of(counts, total)
