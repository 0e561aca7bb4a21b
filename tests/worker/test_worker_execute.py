from __future__ import annotations

import random
import threading
import time
from typing import Any

import msgpack
import pytest

from ringleader.registry.errors import ServiceUnavailable
from ringleader.worker.app import App
from ringleader.worker.envelope import Envelope
from ringleader.worker.errors import TaskTimeout
from ringleader.worker.execute import (
    Cancelled,
    ClaimLost,
    DeadLetter,
    Retry,
    Succeeded,
    Unschedulable,
    call_with_timeout,
    execute,
)
from ringleader.worker.retry import Backoff
from ringleader.worker.tasks import TaskContext

TID = "cd" * 16


def env(name: str, *args: Any, attempt: int = 1, **kwargs: Any) -> Envelope:
    return Envelope(id=TID, name=name, args=list(args), kwargs=kwargs, attempt=attempt)


@pytest.fixture
def app() -> App:
    a = App(environ={})

    @a.task(name="add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @a.task(name="boom", retries=2, backoff=Backoff(initial=1, jitter=0))
    def boom() -> None:
        raise RuntimeError("kaput")

    @a.task(name="permanent", retry_on=(ConnectionError,))
    def permanent() -> None:
        raise KeyError("nope")

    @a.task(name="ctx", bind=True)
    def ctx(c: TaskContext) -> list[Any]:
        return [c.task_id, c.attempt]

    @a.task(name="obj")
    def obj() -> object:
        return object()

    @a.task(name="down")
    def down() -> None:
        raise ServiceUnavailable("billing", 1234.5, "breaker open")

    @a.task(name="slow", timeout=0.2)
    def slow() -> None:
        for _ in range(3000):  # short sleeps so the injected interrupt lands promptly
            time.sleep(0.01)

    return a


def run(app: App, e: Envelope) -> Any:
    return execute(e, app.registry, random.Random(0), worker_id="w1")


def test_success_packs_result(app: App) -> None:
    out = run(app, env("add", 2, y=3))
    assert isinstance(out, Succeeded) and out.result == 5
    assert msgpack.unpackb(out.packed) == 5


def test_bind_passes_context(app: App) -> None:
    out = run(app, env("ctx", attempt=2))
    assert isinstance(out, Succeeded) and out.result == [TID, 2]


def test_retry_then_dead_letter_after_last_retry(app: App) -> None:
    first = run(app, env("boom", attempt=1))
    assert first == Retry(1.0, "RuntimeError", "kaput")
    second = run(app, env("boom", attempt=2))
    assert isinstance(second, Retry) and second.delay == 2.0
    last = run(app, env("boom", attempt=3))
    assert isinstance(last, DeadLetter)
    assert last.reason == "failed after 3 attempts: RuntimeError: kaput"
    assert (last.error_type, last.error) == ("RuntimeError", "kaput")


def test_non_retriable_goes_straight_to_dead_letter(app: App) -> None:
    out = run(app, env("permanent"))
    assert isinstance(out, DeadLetter) and out.reason.startswith("non-retriable error: KeyError")


def test_unknown_name(app: App) -> None:
    out = run(app, env("no.such.task"))
    assert out == DeadLetter(reason="unknown task name 'no.such.task'")


def test_bad_arguments_are_a_task_failure_not_a_crash(app: App) -> None:
    out = run(app, env("add", 1, 2, 3))
    assert isinstance(out, Retry) and out.error_type == "TypeError"


def test_unserialisable_result(app: App) -> None:
    out = run(app, env("obj"))
    assert isinstance(out, DeadLetter) and "not msgpack-serialisable" in out.reason


def test_service_unavailable_parks(app: App) -> None:
    out = run(app, env("down", attempt=3))  # attempts do not matter: the call never left
    assert isinstance(out, Unschedulable)
    assert (out.service, out.retry_at) == ("billing", 1234.5)
    assert "breaker open" in out.error


def test_duck_typed_service_unavailable() -> None:
    a = App(environ={})

    class Down(Exception):
        service = "mail"
        retry_at = None

    @a.task(name="d")
    def d() -> None:
        raise Down()

    assert run(a, env("d")) == Unschedulable("mail", None, "Down")


def test_timeout_is_a_retriable_failure(app: App) -> None:
    start = time.monotonic()
    out = run(app, env("slow"))
    assert time.monotonic() - start < 5
    assert isinstance(out, Retry) and out.error_type == "TaskTimeout"


def test_keyboard_interrupt_passes_through() -> None:
    a = App(environ={})

    @a.task(name="k")
    def k() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(a, env("k"))


def test_call_with_timeout_returns_and_reraises() -> None:
    assert call_with_timeout(lambda: 7, 5, "t") == 7
    assert call_with_timeout(lambda: 8, None, "t") == 8

    def fail() -> None:
        raise ValueError("v")

    with pytest.raises(ValueError, match="v"):
        call_with_timeout(fail, 5, "t")


def test_timed_out_python_code_is_interrupted() -> None:
    stopped = threading.Event()
    progressed: list[int] = []

    def spin() -> None:
        try:
            while True:  # pure Python: the injected exception lands here
                progressed.append(1)
                time.sleep(0.01)
        finally:
            stopped.set()

    with pytest.raises(TaskTimeout, match=r"exceeded its timeout of 0\.1s"):
        call_with_timeout(spin, 0.1, "spin")
    assert stopped.wait(5), "timed-out task kept running"


def test_a_checkpoint_after_the_claim_lapsed_ends_the_run_with_no_outcome_of_its_own() -> None:
    a = App(environ={})
    steps: list[int] = []

    @a.task(name="steps", bind=True, retries=3)
    def run_steps(c: TaskContext) -> None:
        for i in range(3):
            c.checkpoint()
            steps.append(i)

    held = iter([True, False])
    out = execute(env("steps"), a.registry, random.Random(0), claim_check=lambda: next(held, False))
    assert isinstance(out, ClaimLost)  # neither a retry nor a dead letter
    assert steps == [0]


def test_a_lapsed_claim_wins_over_a_cancel_and_a_held_one_lets_the_cancel_through() -> None:
    a = App(environ={})

    @a.task(name="wait", bind=True)
    def wait(c: TaskContext) -> None:
        c.checkpoint()

    lost = execute(env("wait"), a.registry, random.Random(0), cancel_check=lambda: True,
                   claim_check=lambda: False)  # fmt: skip
    assert isinstance(lost, ClaimLost)
    cancelled = execute(env("wait"), a.registry, random.Random(0), cancel_check=lambda: True,
                        claim_check=lambda: True)  # fmt: skip
    assert isinstance(cancelled, Cancelled)
