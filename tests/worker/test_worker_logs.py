"""A worker process with `RINGLEADER_LOG_FORMAT=json` on real brokers and Redis: every line
it writes is one JSON object, and the task's own lines carry its id, name, attempt,
partition, generation and worker id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringleader.client import Client
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]


def test_a_json_worker_writes_only_json_and_task_lines_say_where_they_ran(
    kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    settings = procs.namespace(kafka_bootstrap, redis_url, unique_name, partitions=4)
    with procs.workers_of(settings, tmp_path) as ws:
        w = ws.start("w1", concurrency=2, extra_env={"RINGLEADER_LOG_FORMAT": "json"})
        with Client(settings=settings) as client:
            h = client.submit("chatty", kwargs={"word": "hello"})
            assert h.result(timeout=120) == "hello"
        w.terminate()
        assert w.wait(60) == 0
        text = w.log_text()
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert any(r["msg"].startswith("worker w1 started") for r in rows)
    task_rows = [r for r in rows if "says hello" in r["msg"]]
    assert [r["logger"] for r in task_rows] == ["ringleader.task.chatty", "user.code"]
    for r in task_rows:
        assert r["task_id"] == h.id and r["task"] == "chatty" and r["attempt"] == 1
        assert r["partition"] == h.partition and r["worker_id"] == "w1"
        assert isinstance(r["generation"], int) and r["generation"] >= 0
