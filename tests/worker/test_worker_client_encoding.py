"""The Client packs envelopes itself (the submit hot path): byte for byte what
`worker.envelope.encode` writes, with the same refusals. No broker is contacted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringleader.worker.client import Client, TaskSpec, idempotent_task_id
from ringleader.worker.envelope import decode, encode
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge
from ringleader.worker.settings import AppSettings


@pytest.fixture
def client() -> Iterator[Client]:
    # Nothing here reaches the broker: keys (which need the partition count) are not used.
    c = Client(
        settings=AppSettings(namespace="enc", bootstrap="127.0.0.1:1", max_payload_bytes=4096),
        producer_config={"log_level": 2},
    )
    yield c
    c.close(timeout=0)


SPECS: list[TaskSpec] = [
    TaskSpec("a"),
    TaskSpec("b", [1, "two", 3.5, None, True, b"\x00"], {"k": [1, {"n": 2}]}),
    TaskSpec("c", (1, 2), priority=-3, not_before=1700000000),
    TaskSpec("d", idempotency_key="order-1", not_before=12.25),
]


@pytest.mark.parametrize("batch", [None, "f" * 32])
def test_packed_bytes_are_what_envelope_encode_writes(client: Client, batch: str | None) -> None:
    for task_id, name, data, key, part in client._prepare(SPECS, batch):
        env = decode(data)
        assert encode(env) == data
        assert (env.id, env.name, env.batch, env.attempt) == (task_id, name, batch, 1)
        assert key is None and part is None
    ids = [p[0] for p in client._prepare(SPECS, None)]
    assert len(set(ids)) == 4 and ids[3] == idempotent_task_id("enc", "order-1")


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
def test_bad_specs_are_refused_naming_the_task(client: Client, spec: Any, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message) as e:
        client._prepare([TaskSpec("ok"), spec] if spec.key is None else [spec], None)
    assert "task" in str(e.value)


def test_payload_limit_names_sizes_and_task(client: Client) -> None:
    with pytest.raises(PayloadTooLarge) as e:
        client._prepare([TaskSpec("ok"), TaskSpec("big", ["x" * 5000])], None)
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
    c = Client(
        settings=AppSettings(namespace="enc", bootstrap="127.0.0.1:1"),
        producer_config={"log_level": 2},
    )
    try:
        # Repeated names, priorities and absent keys hit the cached pieces; the rest do not.
        for _, _, data, _, _ in c._prepare(specs + specs, batch):
            assert encode(decode(data)) == data
    finally:
        c.close(timeout=0)
