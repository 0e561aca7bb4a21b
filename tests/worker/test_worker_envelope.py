from __future__ import annotations

import contextlib
import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringleader.worker.envelope import (
    DEFAULT_MAX_PAYLOAD,
    DeadLetterRecord,
    Envelope,
    EventKind,
    EventPacker,
    TaskEvent,
    decode,
    decode_dead_letter,
    decode_event,
    encode,
    encode_dead_letter,
    encode_event,
    new_task_id,
)
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge

TID = "0123456789abcdef0123456789abcdef"


def env(**kw: Any) -> Envelope:
    base: dict[str, Any] = {"id": TID, "name": "pkg.add", "args": [1, 2], "submitted_at": 1.5}
    base.update(kw)
    return Envelope(**base)


def raw(**overrides: Any) -> dict[str, Any]:
    rec: dict[str, Any] = msgpack.unpackb(encode(env()), raw=False)
    rec.update(overrides)
    return rec


def pack(rec: Any) -> bytes:
    return msgpack.packb(rec, use_bin_type=True)  # type: ignore[no-any-return]


def test_round_trip_all_fields() -> None:
    e = env(
        kwargs={"x": b"\x00bin", "y": [1.5, None, {"n": True}]},
        priority=-3,
        attempt=4,
        idempotency_key="k1",
        batch="b1",
        not_before=99.0,
    )
    assert decode(encode(e)) == e


def test_new_task_id_is_uuid4_hex() -> None:
    a, b = new_task_id(), new_task_id()
    assert a != b and len(a) == 32 and int(a, 16) >= 0
    decode(encode(env(id=a)))


def test_next_attempt() -> None:
    assert env().next_attempt().attempt == 2


@given(
    args=st.lists(st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(), st.binary(), st.none())),
    prio=st.integers(-(2**63), 2**63 - 1),
    key=st.one_of(st.none(), st.text(min_size=1)),
)
def test_round_trip_property(args: list[Any], prio: int, key: str | None) -> None:
    e = env(args=args, priority=prio, idempotency_key=key)
    assert decode(encode(e)) == e


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"\xc1", "not msgpack"),  # 0xc1 is never used
        (b"\x92\x01", "not msgpack"),  # truncated array
        (pack([1, 2]), "must be a msgpack map"),
        (pack({"id": TID}), "schema version"),
        (pack({**raw(), "v": 2}), "unsupported schema version 2"),
        (pack({**raw(), "v": True}), "schema version"),
        (encode(env()) + b"\x00", "1 trailing bytes"),
        (pack({**raw(), "extra": 1}), "unknown fields ['extra']"),
        (pack({k: v for k, v in raw().items() if k != "kwargs"}), "missing fields ['kwargs']"),
        (pack(raw(priority=True)), "'priority' must be an int"),
        (pack(raw(priority=1.0)), "'priority' must be an int"),
        (pack(raw(attempt=0)), "'attempt' must be >= 1"),
        (pack(raw(args={"a": 1})), "'args' must be an array"),
        (pack(raw(kwargs=[1])), "'kwargs' must be a map"),
        (pack(raw(name="")), "'name' must not be empty"),
        (pack(raw(name=b"bytes")), "'name' must be a string"),
        (pack(raw(id="XYZ")), "32 lowercase hex"),
        (pack(raw(submitted_at="now")), "'submitted_at' must be a number"),
        (pack(raw(batch="")), "'batch' must not be empty"),
        (pickle.dumps({"id": TID}), "trailing bytes"),  # 0x80 reads as an empty map
        (b"\x81\xa1v\xc4\x01\x01", "schema version"),  # version as bytes
        (msgpack.packb({"v": 1}, use_bin_type=True)[:-1], "not msgpack"),
        (b"\x81\xa1v\xd4\x05\x01", "extension type 5"),  # fixext1
        (b"\x81\xa1v\xa2\xff\xfe", "not UTF-8"),
    ],
)
def test_decode_rejects_with_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as ei:
        decode(data)
    assert fragment in ei.value.reason


def test_decode_rejects_map_with_non_string_keys() -> None:
    with pytest.raises(EnvelopeError, match=r"not msgpack|schema"):
        decode(pack({**raw(), 1: 2}))


def test_decode_rejects_kwargs_with_non_string_keys() -> None:
    with pytest.raises(EnvelopeError):
        decode(pack(raw(kwargs={"a": 1, b"b": 2})))


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(EnvelopeError, match="must be bytes"):
        decode("text")  # type: ignore[arg-type]


def test_decode_accepts_integer_times_from_other_producers() -> None:
    assert decode(pack(raw(submitted_at=7))).submitted_at == 7.0


@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_other_exception(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(data)


def test_payload_limit_on_encode_reports_sizes() -> None:
    big = env(args=[b"x" * DEFAULT_MAX_PAYLOAD])
    with pytest.raises(PayloadTooLarge) as ei:
        encode(big)
    assert ei.value.limit == DEFAULT_MAX_PAYLOAD
    assert ei.value.size > DEFAULT_MAX_PAYLOAD
    assert str(DEFAULT_MAX_PAYLOAD) in str(ei.value)
    assert len(encode(big, max_size=None)) == ei.value.size


def test_payload_limit_configurable_and_checked_on_decode() -> None:
    data = encode(env(args=["y" * 500]))
    with pytest.raises(PayloadTooLarge):
        encode(env(args=["y" * 500]), max_size=100)
    with pytest.raises(PayloadTooLarge) as ei:
        decode(data, max_size=100)
    assert isinstance(ei.value, EnvelopeError) and ei.value.size == len(data)


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "nothex"},
        {"name": ""},
        {"args": "abc"},
        {"kwargs": {1: 2}},
        {"priority": 1.5},
        {"attempt": 0},
        {"idempotency_key": ""},
    ],
)
def test_encode_validates(bad: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        encode(env(**bad))


def test_encode_rejects_unserialisable_args() -> None:
    with pytest.raises(EnvelopeError, match="not msgpack-serialisable"):
        encode(env(args=[object()]))


def test_dead_letter_round_trip() -> None:
    rec = DeadLetterRecord(
        original=b"\xc1garbage",
        reason="envelope is not msgpack",
        topic="ns.tasks",
        partition=3,
        offset=42,
        worker_id="w1",
        at=10.0,
    )
    assert decode_dead_letter(encode_dead_letter(rec)) == rec
    rec2 = DeadLetterRecord(b"x", "r", "t", 0, 0, "w", 1.0, task_id=TID, name="n", attempt=4)
    assert decode_dead_letter(encode_dead_letter(rec2)) == rec2


def test_dead_letter_strict() -> None:
    with pytest.raises(EnvelopeError, match="dead-letter record"):
        decode_dead_letter(encode(env()))


def test_event_round_trip_and_rules() -> None:
    ev = TaskEvent(TID, "n", EventKind.RETRYING, 2, 5.0, error="boom", delay=0.25)
    assert decode_event(encode_event(ev)) == ev
    ok = TaskEvent(TID, "n", EventKind.SUCCEEDED, 1, 5.0, worker_id="w1")
    assert decode_event(encode_event(ok)) == ok
    with pytest.raises(EnvelopeError, match="delay"):
        encode_event(TaskEvent(TID, "n", EventKind.RETRYING, 2, 5.0))
    with pytest.raises(EnvelopeError, match="delay"):
        encode_event(TaskEvent(TID, "n", EventKind.FAILED, 2, 5.0, delay=1.0))
    bad = msgpack.unpackb(encode_event(ok), raw=False)
    bad["kind"] = "exploded"
    with pytest.raises(EnvelopeError, match="unknown kind 'exploded'"):
        decode_event(pack(bad))


@given(
    task_id=st.text(max_size=40) | st.text("0123456789abcdef", min_size=32, max_size=32),
    name=st.text(min_size=1, max_size=8),
    kind=st.sampled_from(list(EventKind)),
    attempt=st.integers(1, 2**40),
    at=st.floats(allow_nan=False) | st.integers(0, 2**40),
    error=st.none() | st.text(max_size=8),
    delay=st.floats(0, 1e6),
    worker_id=st.none() | st.text(max_size=8),
)
def test_event_packer_writes_what_encode_event_writes(
    *,
    task_id: str,
    name: str,
    kind: EventKind,
    attempt: int,
    at: float,
    error: str | None,
    delay: float,
    worker_id: str | None,
) -> None:
    packer = EventPacker(worker_id)
    d = delay if kind is EventKind.RETRYING else None
    ev = TaskEvent(task_id, name, kind, attempt, at, error=error, delay=d, worker_id=worker_id)
    for _ in range(2):  # the second time from the cached pieces
        assert packer.pack(task_id, name, kind, attempt, at, error=error, delay=d) == (
            encode_event(ev)
        )
    with pytest.raises(EnvelopeError, match="delay"):
        packer.pack(task_id, name, kind, attempt, at, delay=None if d is not None else 1.0)
