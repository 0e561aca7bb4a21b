"""`ledger.running_live` against a real Redis: the runs `ringleader status` counts are the
ones a live process vouches for, not what a dead process left in its worker's running hash."""

from __future__ import annotations

import msgpack
import pytest
import redis

from ringleader.worker.ledger import TaskLedger, Verdict, new_incarnation, running, running_live
from ringleader.worker.results import CompletionWrite, ResultStore, RunOf

pytestmark = pytest.mark.redis


def worker(client: redis.Redis[bytes], prefix: str, wid: str) -> TaskLedger:
    ledger = TaskLedger(
        client, prefix, worker_id=wid, incarnation=new_incarnation(), crash_limit=3, ttl=60
    )
    ledger.beat(30)
    return ledger


def test_runs_of_live_processes_count_and_a_dead_ones_leftovers_do_not(
    redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    client, prefix = redis_client, redis_prefix
    assert running_live(client, prefix, []) == {}
    w1, w2 = worker(client, prefix, "w1"), worker(client, prefix, "w2")
    assert w1.begin("a", "deploy", 1, 100.0).verdict is Verdict.RUN
    assert w1.begin("b", "build", 1, 110.0).verdict is Verdict.RUN
    live = running_live(client, prefix, ["w1", "w2", "w1", "nobody"])
    assert list(live) == ["w1", "w2", "nobody"]
    assert [(t.task_id, t.name, t.started_at) for t in live["w1"]] == [
        ("a", "deploy", 100.0),
        ("b", "build", 110.0),
    ]
    assert live["w2"] == [] and live["nobody"] == []

    # w1 is SIGKILLed and restarted under the same worker id without a supervisor: its
    # running hash still names both runs, but no live process vouches for them.
    client.delete(w1.alive_key)
    w1b = worker(client, prefix, "w1")
    assert [t.task_id for t in running(client, prefix, "w1")] == ["a", "b"]
    assert running_live(client, prefix, ["w1"]) == {"w1": []}
    # "a" runs again (alone: it is a suspect now) on the new process: counted, at its new start.
    assert w1b.begin("a", "deploy", 1, 200.0, alone=True).verdict is Verdict.RUN
    assert [(t.task_id, t.started_at) for t in running_live(client, prefix, ["w1"])["w1"]] == [
        ("a", 200.0)
    ]
    # "b" runs on w2 and completes there: its run record is gone; w1's leftover stays out.
    assert w2.begin("b", "build", 1, 210.0, alone=True).verdict is Verdict.RUN
    assert [t.task_id for t in running_live(client, prefix, ["w2"])["w2"]] == ["b"]
    write = CompletionWrite("b", packed=msgpack.packb(1), at=220.0, worker_id="w2")
    ResultStore(client, prefix).write([], [write], 60, run=RunOf(w2.start_field, w2.running_key))
    live = running_live(client, prefix, ["w1", "w2"])
    assert [t.task_id for t in live["w1"]] == ["a"] and live["w2"] == []


def test_worker_ids_with_spaces_match_their_own_starts_only(
    redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    client, prefix = redis_client, redis_prefix
    a, ab = worker(client, prefix, "a"), worker(client, prefix, "a b")
    assert a.begin("t", "job", 1, 5.0).verdict is Verdict.RUN
    client.delete(a.alive_key)  # "a" dies mid-run; "a b" runs the task again
    assert ab.begin("t", "job", 1, 6.0, alone=True).verdict is Verdict.RUN
    live = running_live(client, prefix, ["a", "a b"])
    assert live["a"] == [] and [t.task_id for t in live["a b"]] == ["t"]
