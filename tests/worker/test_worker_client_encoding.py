"""The producer packs envelopes itself (`ringleader.packing.pack`, the submit hot path): byte
for byte what `worker.envelope.encode` writes, with the same refusals. No broker is
contacted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringleader.packing import Prepared, TaskSpec, idempotent_task_id, pack
from ringleader.worker.envelope import decode, encode
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge
from ringleader.worker.lanes import level_for
from ringleader.worker.routing import partition_for

PARTITIONS = 6


def packed(specs: Sequence[TaskSpec], batch: str | None, limit: int = 4096) -> list[Prepared]:
    return pack(
        specs, namespace="enc", max_payload_bytes=limit, batch=batch, partitions=lambda: PARTITIONS
    )


SPECS: list[TaskSpec] = [
    TaskSpec("a"),
    TaskSpec("b", [1, "two", 3.5, None, True, b"\x00"], {"k": [1, {"n": 2}]}),
    TaskSpec("c", (1, 2), priority=-3, not_before=1700000000),
    TaskSpec("d", idempotency_key="order-1", not_before=12.25),
]


@pytest.mark.parametrize("batch", [None, "f" * 32])
def test_packed_bytes_are_what_envelope_encode_writes(batch: str | None) -> None:
    for task_id, name, data, key, part, level in packed(SPECS, batch):
        env = decode(data)
        assert encode(env) == data
        assert (env.id, env.name, env.batch, env.attempt) == (task_id, name, batch, 1)
        assert key is None and part is None
        assert level == level_for(env.priority)  # which task topic: -3 is the low level
    ids = [p[0] for p in packed(SPECS, None)]
    assert len(set(ids)) == 4 and ids[3] == idempotent_task_id("enc", "order-1")


def test_keyed_specs_get_their_partition_and_the_count_is_asked_once() -> None:
    asked: list[int] = []

    def count() -> int:
        asked.append(1)
        return PARTITIONS

    specs = [TaskSpec("k", key="order-7"), TaskSpec("k", key=b"order-8"), TaskSpec("u")]
    out = pack(specs, namespace="enc", max_payload_bytes=4096, batch=None, partitions=count)
    assert [(p[3], p[4]) for p in out] == [
        (b"order-7", partition_for(b"order-7", PARTITIONS)),
        (b"order-8", partition_for(b"order-8", PARTITIONS)),
        (None, None),
    ]
    assert asked == [1]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TaskSpec(""), "name must be a non-empty string"),
        (TaskSpec("x", "abc"), "args must be a list"),
        (TaskSpec("x", [], {1: 2}), "string keys"),  # type: ignore[dict-item]
        (TaskSpec("x", [object()]), "not msgpack-serialisable"),
        (TaskSpec("x", priority=1.5), "priority must be an int"),  # type: ignore[arg-type]
        (TaskSpec("x", idempotency_key=""), "idempotency_key"),
        (TaskSpec("x", not_before="soon"), "not_before"),  # type: ignore[arg-type]
        (TaskSpec("x", key=3), "key must be str or bytes"),  # type: ignore[arg-type]
    ],
)
def test_bad_specs_are_refused_naming_the_task(spec: Any, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message) as e:
        packed([TaskSpec("ok"), spec], None)
    assert str(e.value).startswith("task 1 (")


def test_payload_limit_names_sizes_and_task() -> None:
    with pytest.raises(PayloadTooLarge) as e:
        packed([TaskSpec("ok"), TaskSpec("big", ["x" * 5000])], None)
    assert e.value.limit == 4096 and e.value.size > 5000
    assert str(e.value).startswith("task 1 ('big'): payload too large")


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            TaskSpec,
            name=st.sampled_from(["a", "b", "名前"]),
            key=st.none(),
            args=st.lists(_values, max_size=3),
            kwargs=st.dictionaries(st.text(max_size=4), _values, max_size=3),
            priority=st.integers(-(2**31), 2**31),
            idempotency_key=st.none() | st.text(min_size=1, max_size=8),
            not_before=st.none() | st.floats(0, 2e9),
        ),
        min_size=1,
        max_size=6,
    ),
    st.none() | st.just("e" * 32),
)
def test_any_specs_pack_as_envelope_encode_does(specs: list[TaskSpec], batch: str | None) -> None:
    # Repeated names, priorities and absent keys hit the cached pieces; the rest do not.
    for _, _, data, _, _, _ in packed(specs + specs, batch, limit=1 << 20):
        assert encode(decode(data)) == data
