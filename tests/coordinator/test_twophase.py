"""Two-phase commit codec and assembler: pure, fed records by hand."""

from __future__ import annotations

from collections.abc import Sequence

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringleader.coordinator.assignment import Assignment, AssignmentDecodeError, AssignmentPointer
from ringleader.coordinator.errors import InconsistentAssignmentError
from ringleader.coordinator.twophase import (
    Applied,
    Expired,
    Inconsistent,
    Outcome,
    Skipped,
    TxAssembler,
    Unseen,
    commit_key,
    decode_commit,
    digest,
    encode_commit,
    part_key,
)
from tests.coordinator.txrecords import encode_tx


def feed_all(
    asm: TxAssembler, records: Sequence[tuple[str | bytes | None, bytes | None]]
) -> list[Outcome]:
    out: list[Outcome] = []
    for off, (k, v) in enumerate(records, start=asm.position):
        out.extend(asm.feed(k, v, off))
    return out


PARTS = {"m1": b"\x01\x02", "m2": b"", "m/with/slash": b"payload"}


def test_keys() -> None:
    assert part_key("assign", "7", "member-1") == "assign/7/member-1"
    assert commit_key("7") == "commit/7"
    with pytest.raises(ValueError, match="txid"):
        part_key("assign", "a/b", "m")
    with pytest.raises(ValueError, match="reserved"):
        part_key("commit", "1", "m")
    with pytest.raises(ValueError, match="part name"):
        part_key("assign", "1", "")


def test_digest_is_order_independent_and_framed() -> None:
    assert digest({"a": b"1", "b": b"2"}) == digest({"b": b"2", "a": b"1"})
    # framing: moving bytes between name and payload changes the digest
    assert digest({"ab": b"c"}) != digest({"a": b"bc"})
    assert digest({"a": b"1"}) != digest({"a": b"1", "b": b""})
    assert len(digest({})) == 32


def test_full_transaction_is_applied_on_commit() -> None:
    asm = TxAssembler("assign")
    records = encode_tx("assign", "5", PARTS)
    out = feed_all(asm, records[:-1])
    assert out == []
    assert asm.pending == {"5": 3}
    out = asm.feed(records[-1][0].encode(), records[-1][1], asm.position)
    assert out == [Applied("5", PARTS, commit_offset=3)]
    assert asm.pending == {}


def test_missing_part_is_inconsistent_never_applied() -> None:
    asm = TxAssembler("assign")
    records = encode_tx("assign", "5", PARTS)
    del records[1]
    out = feed_all(asm, records)
    assert len(out) == 1 and isinstance(out[0], Inconsistent)
    assert "1 of 3 parts missing" in out[0].reason
    assert not any(isinstance(o, Applied) for o in out)


def test_commit_without_any_part_is_inconsistent() -> None:
    asm = TxAssembler("batch")
    out = asm.feed("commit/x", encode_commit("batch", {"t1": b"a"}), 0)
    assert out == [Inconsistent("x", "1 of 1 parts missing: t1", 0)]


def test_digest_mismatch_is_inconsistent() -> None:
    asm = TxAssembler("assign")
    records = encode_tx("assign", "5", PARTS)
    records[0] = (records[0][0], b"tampered")
    out = feed_all(asm, records)
    assert out == [Inconsistent("5", "parts do not match the commit digest", 3)]


def test_empty_transaction_applies() -> None:
    asm = TxAssembler("batch")
    assert feed_all(asm, encode_tx("batch", "e", {})) == [Applied("e", {}, 0)]


def test_interleaved_txids_each_decided_on_its_own_commit() -> None:
    asm = TxAssembler("assign")
    a = encode_tx("assign", "1", {"x": b"a1", "y": b"a2"})
    b = encode_tx("assign", "2", {"x": b"b1"})
    c = encode_tx("assign", "3", {"z": b"c1"})
    # parts of 1, 2, 3 interleaved; 2 commits first, 3 never commits, 1 commits last
    order = [a[0], b[0], c[0], a[1], b[1], a[2]]
    out = feed_all(asm, order)
    assert [type(o) for o in out] == [Applied, Applied]
    assert [o.txid for o in out if isinstance(o, Applied)] == ["2", "1"]
    assert out[1] == Applied("1", {"x": b"a1", "y": b"a2"}, commit_offset=5)
    assert asm.pending == {"3": 1}


def test_abandoned_parts_then_later_generation_commits() -> None:
    asm = TxAssembler("assign")
    dead = encode_tx("assign", "7", {"m1": b"old"})[:-1]  # leader died before commit
    good = encode_tx("assign", "8", {"m1": b"new", "m2": b"n2"})
    out = feed_all(asm, dead + good)
    assert out == [Applied("8", {"m1": b"new", "m2": b"n2"}, commit_offset=3)]
    assert asm.pending == {"7": 1}
    assert asm.expire(older_than_offset=1) == [Expired("7", "no commit before offset 1", 1)]
    assert asm.pending == {}


def test_expire_keeps_recent_pending() -> None:
    asm = TxAssembler("assign")
    feed_all(asm, [("assign/1/a", b"x"), ("assign/2/a", b"y")])
    assert asm.expire(1) == [Expired("1", "no commit before offset 1", 1)]
    assert asm.pending == {"2": 1}


def test_max_pending_bounds_memory() -> None:
    asm = TxAssembler("batch", max_pending=2)
    out = feed_all(asm, [("batch/a/p", b""), ("batch/b/p", b""), ("batch/c/p", b"")])
    assert [o.txid for o in out if isinstance(o, Expired)] == ["a"]
    assert set(asm.pending) == {"b", "c"}


def test_reused_txid_is_judged_by_its_own_commit() -> None:
    """Generation numbers can repeat after a coordinator reset: the second tx stands alone."""
    asm = TxAssembler("assign")
    first = encode_tx("assign", "0", {"m1": b"a", "m2": b"b"})
    stale = [("assign/0/m3", b"from a dead leader")]
    second = encode_tx("assign", "0", {"m1": b"c"})
    out = feed_all(asm, first + stale + second)
    assert out == [
        Applied("0", {"m1": b"a", "m2": b"b"}, commit_offset=2),
        Applied("0", {"m1": b"c"}, commit_offset=5),
    ]


def test_rewritten_part_replaces_earlier() -> None:
    asm = TxAssembler("assign")
    recs = [("assign/1/m", b"first try"), *encode_tx("assign", "1", {"m": b"second"})]
    assert feed_all(asm, recs) == [Applied("1", {"m": b"second"}, 2)]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"x", "no key"),
        (b"\xff\xfe", b"x", "not UTF-8"),
        ("assign/1/m", None, "no value"),
        ("batch/1/m", b"x", "not of kind"),
        ("assign/1", b"x", "malformed part key"),
        ("assign//m", b"x", "malformed part key"),
        ("commit/", b"x", "malformed commit key"),
        ("commit/a/b", b"x", "malformed commit key"),
        ("random", b"x", "not of kind"),
    ],
)
def test_malformed_records_are_skipped(
    key: bytes | str | None, value: bytes | None, reason: str
) -> None:
    asm = TxAssembler("assign")
    out = asm.feed(key, value, 0)
    assert len(out) == 1 and isinstance(out[0], Skipped)
    assert reason in out[0].reason
    assert asm.position == 1


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\xc1garbage",
        msgpack.packb([1]),
        msgpack.packb({"v": 1, "kind": "assign", "n": 2, "names": ["a"], "digest": b"0" * 32}),
        msgpack.packb({"v": 1, "kind": "assign", "n": 1, "names": ["a"], "digest": b"short"}),
        msgpack.packb({"v": 1, "kind": "assign", "n": 2, "names": ["a", "a"], "digest": b"0" * 32}),
        msgpack.packb({"kind": "assign", "n": 0, "names": [], "digest": b"0" * 32}),
    ],
)
def test_garbage_commit_is_inconsistent_not_raised(value: bytes) -> None:
    asm = TxAssembler("assign")
    asm.feed("assign/1/a", b"x", 0)
    out = asm.feed("commit/1", value, 1)
    assert len(out) == 1 and isinstance(out[0], Inconsistent)
    assert "bad commit record" in out[0].reason
    with pytest.raises(ValueError):
        decode_commit(value)


def test_commit_of_another_kind_is_skipped_and_keeps_parts() -> None:
    asm = TxAssembler("assign")
    asm.feed("assign/1/a", b"x", 0)
    out = asm.feed("commit/1", encode_commit("batch", {"a": b"x"}), 1)
    assert isinstance(out[0], Skipped)
    assert asm.pending == {"1": 1}


def test_replayed_offsets_are_ignored() -> None:
    asm = TxAssembler("assign")
    recs = encode_tx("assign", "1", {"a": b"x"})
    assert len(feed_all(asm, recs)) == 1
    assert asm.feed(recs[1][0], recs[1][1], 1) == []


def test_assembler_config_errors() -> None:
    with pytest.raises(ValueError):
        TxAssembler("commit")
    with pytest.raises(ValueError):
        TxAssembler("a/b")
    with pytest.raises(ValueError):
        TxAssembler("assign", max_pending=0)


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)


@given(
    st.lists(
        st.tuples(
            st.text("abc0123", min_size=1, max_size=3),
            st.dictionaries(names, st.binary(max_size=8), max_size=4),
            st.booleans(),
        ),
        max_size=8,
    ),
    st.randoms(),
)
@settings(max_examples=200, deadline=None)
def test_interleavings_apply_exactly_the_committed(
    txs: list[tuple[str, dict[str, bytes], bool]], rnd: object
) -> None:
    """Any interleaving that keeps each tx's commit after its own parts applies exactly the
    committed txs with their exact parts, and never a tx whose commit is missing."""
    import random

    assert isinstance(rnd, random.Random)
    seen: set[str] = set()
    streams: list[list[tuple[str, bytes]]] = []
    expected: dict[str, dict[str, bytes]] = {}
    for txid, parts, committed in txs:
        if txid in seen:
            continue
        seen.add(txid)
        recs = encode_tx("batch", txid, parts)
        if committed:
            expected[txid] = parts
        else:
            recs = recs[:-1]
        streams.append(recs)
    merged: list[tuple[str, bytes]] = []
    while any(streams):
        s = rnd.choice([s for s in streams if s])
        merged.append(s.pop(0))
    asm = TxAssembler("batch")
    out = feed_all(asm, merged)
    applied = {o.txid: o.parts for o in out if isinstance(o, Applied)}
    assert applied == expected
    assert not any(isinstance(o, Inconsistent | Skipped) for o in out)


# ------------------------------------------------------------ assignment records (pure)


def test_pointer_roundtrip_never_empty() -> None:
    p = AssignmentPointer(generation=0, commit_offset=0, leader_id="")
    blob = p.encode()
    assert blob
    assert AssignmentPointer.decode(blob) == p


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",
        msgpack.packb({"v": 1, "g": 1, "o": 2}),
        msgpack.packb({"g": 1, "o": 2, "l": ""}),
    ],
)
def test_pointer_decode_rejects_garbage(blob: bytes) -> None:
    with pytest.raises(AssignmentDecodeError):
        AssignmentPointer.decode(blob)


def test_assignment_parts_roundtrip() -> None:
    a = Assignment(3, "m1", {"m1": [2, 0], "m2": [], "m3": [1]})
    parts = a.encode_parts()
    assert set(parts) == {"m1", "m2", "m3"}
    assert Assignment.from_parts(parts) == Assignment(3, "m1", {"m1": [0, 2], "m2": [], "m3": [1]})
    assert a.partitions_of("nobody") == []


def test_assignment_refuses_two_owners() -> None:
    with pytest.raises(InconsistentAssignmentError, match="partition 1 owned by both"):
        Assignment(1, "a", {"a": [1], "b": [1]})


def test_assignment_parts_must_agree() -> None:
    a = Assignment(3, "m1", {"m1": [0]}).encode_parts()
    b = Assignment(4, "m1", {"m2": [1]}).encode_parts()
    with pytest.raises(InconsistentAssignmentError, match="disagree"):
        Assignment.from_parts(a | b)
    with pytest.raises(InconsistentAssignmentError, match="is for member"):
        Assignment.from_parts({"m9": a["m1"]})
    with pytest.raises(InconsistentAssignmentError, match="no parts"):
        Assignment.from_parts({})
    with pytest.raises(AssignmentDecodeError):
        Assignment.from_parts({"m1": b"junk"})


def test_assembler_started_mid_log_answers_unseen_not_inconsistent() -> None:
    parts = {"a": b"1", "b": b"2"}
    # parts at 10, 11; commit at 12 naming first offset 10; a reader that started at 11
    asm = TxAssembler("assign", start_offset=11)
    assert asm.feed("assign/9/b", b"2", 11) == []
    out = asm.feed("commit/9", encode_commit("assign", parts, first_offset=10), 12)
    assert out == [Unseen("9", commit_offset=12, first_offset=10)]
    # a reader that started at the first part applies it
    asm = TxAssembler("assign", start_offset=10)
    asm.feed("assign/9/a", b"1", 10)
    asm.feed("assign/9/b", b"2", 11)
    assert asm.feed("commit/9", encode_commit("assign", parts, first_offset=10), 12) == [
        Applied("9", parts, 12)
    ]
    # missing parts after the start are still inconsistent
    asm = TxAssembler("assign", start_offset=10)
    asm.feed("assign/9/a", b"1", 10)
    out = asm.feed("commit/9", encode_commit("assign", parts, first_offset=10), 12)
    assert isinstance(out[0], Inconsistent)
