"""Pure tests of the instance model and the reconcile hashcode (no Redis)."""

from __future__ import annotations

import random

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringleader.registry import hashcode
from ringleader.registry.errors import DecodeError, InvalidInstance
from ringleader.registry.model import Instance, Metadata, Status

names = st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True)
instances = st.builds(
    Instance,
    service=names,
    instance_id=st.from_regex(r"[A-Za-z0-9_./:é-]{1,20}", fullmatch=True),
    address=st.text(max_size=30),
    status=st.sampled_from(Status),
    metadata=st.builds(
        Metadata.of,
        labels=st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=3),
        zone=st.text(max_size=5),
        capacity=st.integers(0, 1000),
        version=st.text(max_size=5),
    ),
    lease_duration=st.floats(0.001, 1e6),
)


@given(instances)
def test_encoding_round_trips_and_is_canonical(inst: Instance) -> None:
    enc = inst.encode()
    back = Instance.decode(enc)
    assert back == inst
    assert back.encode() == enc


def test_decode_is_strict() -> None:
    good = Instance("svc", "i1", "h:1").encode()
    Instance.decode(good)
    with pytest.raises(DecodeError):
        Instance.decode(good + b"\x00")
    with pytest.raises(DecodeError):
        Instance.decode(b"\xc1")
    fields = msgpack.unpackb(good)
    for i, bad in [(4, "SLEEPING"), (7, True), (7, 1.5), (9, 30), (0, 2), (1, ""), (2, 5)]:
        f = list(fields)
        f[i] = bad
        with pytest.raises(DecodeError):
            Instance.decode(msgpack.packb(f, use_bin_type=True))
    with pytest.raises(DecodeError):
        Instance.decode(msgpack.packb(fields[:9]))


def test_model_rejects_bad_fields() -> None:
    with pytest.raises(InvalidInstance):
        Instance("has/slash", "i", "a")
    with pytest.raises(InvalidInstance):
        Instance("svc", "", "a")
    with pytest.raises(InvalidInstance):
        Instance("svc", "i", "a", lease_duration=0)
    with pytest.raises(InvalidInstance):
        Instance("svc", "i", "a", status="ASLEEP")  # type: ignore[arg-type]
    with pytest.raises(InvalidInstance):
        Metadata(labels=(("b", "1"), ("a", "2")))
    with pytest.raises(InvalidInstance):
        Metadata.of(capacity=-1)
    assert Instance("svc", "i", "a", status="DOWN").status is Status.DOWN  # type: ignore[arg-type]


def test_status_summary_is_eurekas_sorted_form() -> None:
    assert hashcode.status_summary({"UP": 3, "DOWN": 1, "STARTING": 0}) == "DOWN_1_UP_3_"
    assert hashcode.status_summary({}) == ""


@given(st.lists(instances, max_size=12, unique_by=lambda i: i.key), st.randoms())
def test_digest_is_order_independent_and_per_instance_updatable(
    insts: list[Instance], rnd: random.Random
) -> None:
    encs = [i.encode() for i in insts]
    shuffled = encs[:]
    rnd.shuffle(shuffled)
    assert hashcode.digest_of(encs) == hashcode.digest_of(shuffled)
    # Remove each instance's term incrementally: ends at zero.
    d = hashcode.digest_of(encs)
    for e in shuffled:
        d = hashcode.sub(d, hashcode.term(e))
    assert d == 0


def test_digest_sees_a_change_that_keeps_the_status() -> None:
    a = [Instance("svc", f"i{n}", f"h:{n}") for n in range(3)]
    b = [*a[:2], Instance("svc", "i2", "h:moved")]
    ha = hashcode.hashcode_of((i.status.value, i.encode()) for i in a)
    hb = hashcode.hashcode_of((i.status.value, i.encode()) for i in b)
    assert ha.status == hb.status == "UP_3_"
    assert ha.digest != hb.digest
    assert ha != hb


def test_sum_digest_does_not_cancel_pairs_like_xor() -> None:
    t = hashcode.term(b"x")
    assert hashcode.add(hashcode.add(0, t), t) != 0
    assert t ^ t == 0  # what XOR would have done


def test_hex_round_trip_and_wraparound() -> None:
    top = hashcode.MODULUS - 1
    assert hashcode.add(top, 1) == 0
    assert hashcode.sub(0, 1) == top
    assert hashcode.from_hex(hashcode.to_hex(top)) == top
    with pytest.raises(ValueError):
        hashcode.from_hex("abc")
