"""The records a `TxLogWriter` writes for one transaction, built without a broker."""

from __future__ import annotations

from collections.abc import Mapping

from ringleader.coordinator.twophase import commit_key, encode_commit, encode_parts


def encode_tx(
    kind: str, txid: str, parts: Mapping[str, bytes], first_offset: int = -1
) -> list[tuple[str, bytes]]:
    """Parts first, commit last, as (key, value) pairs: what readers are fed in log order."""
    records = encode_parts(kind, txid, parts)
    records.append((commit_key(txid), encode_commit(kind, parts, first_offset)))
    return records
