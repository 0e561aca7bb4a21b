from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringleader.worker.errors import ConfigError, TaskTimeout, WorkerError
from ringleader.worker.retry import Backoff, RetryPolicy, as_backoff


def test_exponential_without_jitter() -> None:
    b = Backoff(initial=0.5, maximum=10, exp_base=2, jitter=0)
    rng = random.Random(1)
    assert [b.delay(a, rng) for a in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_seeded_jitter_is_reproducible() -> None:
    b = Backoff(initial=1, maximum=100, jitter=1)
    first = [b.delay(a, random.Random(42)) for a in range(1, 6)]
    again = [b.delay(a, random.Random(42)) for a in range(1, 6)]
    assert first == again
    assert first != [b.delay(a, random.Random(43)) for a in range(1, 6)]


@given(
    attempt=st.integers(1, 2000),
    seed=st.integers(0, 2**32),
    initial=st.floats(0, 10),
    maximum=st.floats(0, 1000),
    jitter=st.floats(0, 5),
)
def test_delay_bounds(
    attempt: int, seed: int, initial: float, maximum: float, jitter: float
) -> None:
    b = Backoff(initial=initial, maximum=maximum, jitter=jitter)
    d = b.delay(attempt, random.Random(seed))
    try:
        base = min(initial * 2.0 ** (attempt - 1), maximum)
    except OverflowError:
        base = maximum
    assert 0 <= d <= maximum
    assert base - 1e-9 <= d <= min(base + jitter, maximum) + 1e-9


@given(st.integers(1, 60), st.integers(0, 2**16))
def test_delay_grows_until_cap(attempt: int, seed: int) -> None:
    b = Backoff(initial=0.1, maximum=30, jitter=0)
    r = random.Random(seed)
    assert b.delay(attempt + 1, r) >= b.delay(attempt, r)


def test_policy_counts_retries_after_first_attempt() -> None:
    p = RetryPolicy(max_retries=2, backoff=Backoff(jitter=0))
    rng = random.Random(0)
    err = RuntimeError("x")
    assert p.next_delay(1, err, rng) == 0.5
    assert p.next_delay(2, err, rng) == 1.0
    assert p.next_delay(3, err, rng) is None


def test_zero_retries() -> None:
    assert RetryPolicy(max_retries=0).next_delay(1, RuntimeError(), random.Random()) is None


def test_retry_on_and_retriable_attribute() -> None:
    p = RetryPolicy(retry_on=(ConnectionError, WorkerError))
    assert p.is_retriable(ConnectionRefusedError())
    assert not p.is_retriable(KeyError("k"))
    assert p.is_retriable(TaskTimeout("t", 1.0))  # retriable = True
    assert not p.is_retriable(ConfigError("bad"))  # RingleaderError default retriable = False

    class Permanent(Exception):
        retriable = False

    assert not RetryPolicy().is_retriable(Permanent())


def test_as_backoff() -> None:
    assert as_backoff(2).initial == 2.0
    b = Backoff(initial=3)
    assert as_backoff(b) is b
    with pytest.raises(ConfigError, match="backoff"):
        as_backoff("fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backoff"):
        as_backoff(True)


@pytest.mark.parametrize(
    "kw", [{"initial": -1}, {"maximum": float("inf")}, {"jitter": float("nan")}, {"exp_base": 0.5}]
)
def test_backoff_validation_names_setting(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=r"backoff\."):
        Backoff(**kw)


def test_policy_validation() -> None:
    with pytest.raises(ConfigError, match="retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ConfigError, match="retries"):
        RetryPolicy(max_retries=1.5)  # type: ignore[arg-type]


def test_delay_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(0, random.Random())


def test_one_retry_policy_for_tasks_and_downstream_calls() -> None:
    from ringleader import registry, retry
    from ringleader.registry import downstream
    from ringleader.worker import retry as worker_retry

    assert worker_retry.RetryPolicy is retry.RetryPolicy is registry.RetryPolicy
    assert worker_retry.Backoff is retry.Backoff is registry.Backoff
    assert downstream.RetryPolicy is retry.RetryPolicy
    assert RetryPolicy(max_retries=2).attempts == 3
    with pytest.raises(ConfigError, match="backoff must be a Backoff"):
        RetryPolicy(backoff=0.5)  # type: ignore[arg-type]
