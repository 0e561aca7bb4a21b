"""The task ledger's scripts against a real Redis: starts, crashes, durable attempts, the
delayed set, and the flusher's write ending runs."""

from __future__ import annotations

import msgpack
import pytest
import redis

from ringleader.worker.delayed import DelayedSet
from ringleader.worker.ledger import TaskLedger, Verdict, new_incarnation, running
from ringleader.worker.results import CompletionWrite, ResultStore, RetryWrite, RunOf, Status
from tests.worker.procs import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_client: redis.Redis[bytes]) -> redis.Redis[bytes]:
    return redis_client


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


def worker(client: redis.Redis[bytes], prefix: str, wid: str, limit: int = 2) -> TaskLedger:
    ledger = TaskLedger(
        client, prefix, worker_id=wid, incarnation=new_incarnation(), crash_limit=limit, ttl=60
    )
    ledger.beat(30)
    return ledger


def run_of(ledger: TaskLedger) -> RunOf:
    return RunOf(ledger.start_field, ledger.running_key)


def crash(client: redis.Redis[bytes], ledger: TaskLedger) -> None:
    """The process dies: its alive key lapses, its starts stay."""
    client.delete(ledger.alive_key)


def test_a_start_of_a_dead_process_is_a_crash_and_the_limit_quarantines(
    client: redis.Redis[bytes], prefix: str
) -> None:
    w1, w2, w3 = (worker(client, prefix, f"w{i}") for i in (1, 2, 3))
    first = w1.begin("t1", "boom", 1, 100.0)
    assert first.verdict is Verdict.RUN and first.attempt == 1 and first.crashes == ()
    assert [r.task_id for r in running(client, prefix, "w1")] == ["t1"]
    crash(client, w1)
    # A suspect: it begins only alone (no other run in progress), and nothing is recorded
    # until then.
    suspect = w2.begin("t1", "boom", 1, 105.0)
    assert suspect.verdict is Verdict.SUSPECT and len(suspect.crashes) == 1
    assert running(client, prefix, "w2") == []
    second = w2.begin("t1", "boom", 1, 110.0, alone=True)
    assert second.verdict is Verdict.RUN and second.attempt == 1  # a crash is no failed run
    assert [(c.worker_id, c.at) for c in second.crashes] == [("w1", 100.0)]
    crash(client, w2)
    third = w3.begin("t1", "boom", 1, 120.0, alone=True)
    assert third.verdict is Verdict.QUARANTINE
    assert sorted(c.worker_id for c in third.crashes) == ["w1", "w2"]


def test_a_run_in_progress_on_a_live_worker_makes_others_wait(
    client: redis.Redis[bytes], prefix: str
) -> None:
    w1, w2 = worker(client, prefix, "w1"), worker(client, prefix, "w2")
    assert w1.begin("t1", "long", 1, 1.0).verdict is Verdict.RUN
    assert w2.begin("t1", "long", 1, 2.0).verdict is Verdict.WAIT
    # It completes on w1: the copy elsewhere is done, not run again.
    store = ResultStore(client, prefix)
    write = CompletionWrite("t1", packed=msgpack.packb(7), at=3.0, worker_id="w1")
    assert store.write([], [write], 60, run=run_of(w1))[1] == [True]
    assert running(client, prefix, "w1") == []
    assert w2.begin("t1", "long", 1, 4.0).verdict is Verdict.DONE


def test_a_retry_counts_once_parks_the_next_attempt_and_stales_old_copies(
    client: redis.Redis[bytes], prefix: str
) -> None:
    w1 = worker(client, prefix, "w1")
    store = ResultStore(client, prefix)
    delayed = DelayedSet(client, prefix)
    assert w1.begin("t1", "flaky", 1, 10.0).verdict is Verdict.RUN
    retry = RetryWrite("t1", due=15.0, envelope=b"env-2", lane=3)
    assert store.write([], [], 60, retries=[retry], run=run_of(w1))[2] == [True]
    # The same write again (its reply was lost): the failed run is not counted twice.
    assert store.write([], [], 60, retries=[retry], run=run_of(w1))[2] == [True]
    assert store.get_status("t1") is Status.RETRYING
    assert delayed.due(14.9, 10) == []
    (item,) = delayed.due(15.0, 10)
    assert (item.task_id, item.lane, item.envelope) == ("t1", 3, b"env-2")
    # A redelivered copy of attempt 1 already ran; attempt 2 is the next one.
    assert w1.begin("t1", "flaky", 1, 16.0).verdict is Verdict.STALE
    nxt = w1.begin("t1", "flaky", 2, 16.0)
    assert nxt.verdict is Verdict.RUN and nxt.attempt == 2
    assert delayed.moved(item) and len(delayed) == 0


def test_moved_keeps_an_entry_parked_again_meanwhile(
    client: redis.Redis[bytes], prefix: str
) -> None:
    w1 = worker(client, prefix, "w1")
    store, delayed = ResultStore(client, prefix), DelayedSet(client, prefix)
    w1.begin("t1", "flaky", 1, 1.0)
    store.write([], [], 60, retries=[RetryWrite("t1", 2.0, b"a2", 0)], run=run_of(w1))
    (old,) = delayed.due(5.0, 10)
    w1.begin("t1", "flaky", 2, 3.0)
    store.write([], [], 60, retries=[RetryWrite("t1", 9.0, b"a3", 0)], run=run_of(w1))
    assert not delayed.moved(old)
    (new,) = delayed.due(9.0, 10)
    assert new.envelope == b"a3"


def test_parking_ends_the_run_and_a_retire_leaves_no_crash(
    client: redis.Redis[bytes], prefix: str
) -> None:
    w1, w2 = worker(client, prefix, "w1"), worker(client, prefix, "w2")
    store = ResultStore(client, prefix)
    w1.begin("t1", "calls-downstream", 1, 1.0)
    store.write([("t1", Status.UNSCHEDULABLE)], [], 60, run=run_of(w1))
    w1.retire()
    again = w2.begin("t1", "calls-downstream", 1, 2.0)
    assert again.verdict is Verdict.RUN and again.crashes == ()


def test_a_cancel_flag_ends_the_task_at_its_next_begin(
    client: redis.Redis[bytes], prefix: str
) -> None:
    w1, w2 = worker(client, prefix, "w1"), worker(client, prefix, "w2")
    assert w1.begin("t1", "job", 1, 10.0).verdict is Verdict.RUN
    client.set(f"{prefix}:{{t1}}:cancel", "1")  # worker.cancel's flag: requested while running
    # The run in progress on a live worker is left to see the flag itself.
    assert w2.begin("t1", "job", 1, 11.0).verdict is Verdict.WAIT
    crash(client, w1)
    # Its worker died (or the run failed and is retried): the next begin says cancelled.
    again = w2.begin("t1", "job", 1, 12.0)
    assert again.verdict is Verdict.CANCELLED
    assert running(client, prefix, "w2") == []  # nothing recorded as running
    assert w2.begin("t2", "job", 1, 12.0).verdict is Verdict.RUN  # other tasks unaffected


def test_a_beat_after_a_lapse_does_not_hand_back_the_runs_begun_before_it(
    client: redis.Redis[bytes], prefix: str
) -> None:
    # After SIGCONT the keeper thread may renew the alive key before a task thread reaches
    # its next checkpoint; by then another worker may run that task (the key had lapsed).
    w1 = worker(client, prefix, "w1")
    w1.beat(0.2)
    old = w1.begin("t1", "slow", 1, 100.0)
    assert old.verdict is Verdict.RUN and w1.claim_held(old.epoch)
    wait_until(lambda: not w1.alive_held(), 10, "the alive key to lapse (a paused process)")
    assert not w1.claim_held(old.epoch)
    w1.beat(30)
    assert w1.alive_held() and not w1.claim_held(old.epoch)
    new = w1.begin("t2", "slow", 1, 101.0)
    assert new.verdict is Verdict.RUN and w1.claim_held(new.epoch)
    w1.beat(30)  # an on-time beat keeps every claim
    assert w1.claim_held(new.epoch)


def test_a_run_stopped_when_its_claim_lapsed_is_abandoned_so_its_new_owner_runs_it(
    client: redis.Redis[bytes], prefix: str
) -> None:
    # The chaos worker-pause failure (Tansu, 2026-12-03): the paused worker came back and
    # beat before the task's new owner asked; its stopped run's start read as live and the
    # new owner waited on it for as long as the paused worker lived.
    w1, w2 = worker(client, prefix, "w1"), worker(client, prefix, "w2")
    w1.beat(0.2)
    old = w1.begin("t1", "slow", 1, 100.0)
    assert old.verdict is Verdict.RUN
    wait_until(lambda: not w1.alive_held(), 10, "the alive key to lapse (a paused process)")
    w1.beat(30)  # resumed: alive again, but the run's claim is gone
    assert not w1.claim_held(old.epoch)
    assert w2.begin("t1", "slow", 1, 101.0).verdict is Verdict.WAIT
    w1.abandon("t1")  # the run stopped at its checkpoint (runner: ClaimLost)
    assert running(client, prefix, "w1") == []
    assert w2.begin("t1", "slow", 1, 102.0).verdict is Verdict.RUN
