"""`ringleader submit | status | tail | worker`, run as a person would: the console script in
a subprocess, configured by options and RINGLEADER_* variables, judged by output and exit code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from ringleader.client import Client
from ringleader.worker.envelope import EventKind, TaskEvent, encode_event
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings

RINGLEADER = str(Path(sys.executable).with_name("ringleader"))


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RINGLEADER, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGLEADER_")}
    env.update(extra)
    return env


def no_traceback(cp: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in cp.stderr, cp.stderr


# --- without services -------------------------------------------------------------------------


def test_submit_with_bad_json_exits_2_and_says_why() -> None:
    cp = run("submit", "add", "--args", "[1,", env=clean_env())
    assert cp.returncode == 2
    assert "--args is not valid JSON" in cp.stderr and cp.stdout == ""
    no_traceback(cp)
    cp = run("submit", "add", "--kwargs", "[1]", env=clean_env())
    assert cp.returncode == 2 and "--kwargs must be an object in JSON" in cp.stderr
    no_traceback(cp)


def test_bad_configuration_exits_2() -> None:
    cp = run("submit", "add", env=clean_env(RINGLEADER_BOOTSTRAP="no-port-here"))
    assert cp.returncode == 2 and "bootstrap" in cp.stderr
    no_traceback(cp)
    cp = run("submit", "add", "--namespace", "bad/ns", env=clean_env())
    assert cp.returncode == 2 and "namespace" in cp.stderr
    no_traceback(cp)


def test_usage_errors_exit_2() -> None:
    cp = run("submit", env=clean_env())
    assert cp.returncode == 2 and "usage:" in cp.stderr
    cp = run("tail", "--max", "0", env=clean_env())
    assert cp.returncode == 2


def test_unreachable_broker_exits_3_within_a_bound() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    cp = run("submit", "add", "--bootstrap", f"127.0.0.1:{port}", env=clean_env())
    assert cp.returncode == 3
    assert f"127.0.0.1:{port}" in cp.stderr and cp.stderr.count("\n") == 1
    assert time.monotonic() - t0 < 30
    no_traceback(cp)


# --- against brokers --------------------------------------------------------------------------


@pytest.fixture
def ns_env(broker: str, redis_url: str, unique_name: str) -> dict[str, str]:
    return clean_env(
        RINGLEADER_NAMESPACE=unique_name,
        RINGLEADER_BOOTSTRAP=broker,
        RINGLEADER_REDIS=redis_url,
        RINGLEADER_PARTITIONS="3",
    )


def _settings(env: dict[str, str]) -> AppSettings:
    return AppSettings.from_env(env)


@pytest.mark.broker
@pytest.mark.redis
def test_submit_prints_the_task_id_and_status_json_shows_the_lag(ns_env: dict[str, str]) -> None:
    ids = []
    for i in range(3):
        cp = run("submit", "add", "--args", f"[{i}]", "--key", f"k{i}", env=ns_env)
        assert cp.returncode == 0, cp.stderr
        ids.append(cp.stdout.strip())
    assert all(len(i) == 32 for i in ids) and len(set(ids)) == 3
    cp = run("status", "--json", env=ns_env)
    assert cp.returncode == 0, cp.stderr
    st = json.loads(cp.stdout)
    assert st["namespace"] == ns_env["RINGLEADER_NAMESPACE"]
    assert st["group"] == ns_env["RINGLEADER_NAMESPACE"] + ".workers"
    assert st["members"] == [] and st["generation"] is None
    assert st["total_lag"] == 3 and st["dead_letters"] == 0
    assert [p["partition"] for p in st["lag"]] == [0, 1, 2]
    assert sum(p["lag"] for p in st["lag"]) == 3
    assert all(p["committed"] is None for p in st["lag"])
    for k in ("instances", "registry", "breakers", "errors", "leader", "group_state"):
        assert k in st
    assert st["protocol"] is None and st["revoking"] == {}  # no generation committed yet
    text = run("status", env=ns_env)
    assert text.returncode == 0 and "lag (total 3)" in text.stdout


@pytest.mark.broker
def test_tail_shows_events(ns_env: dict[str, str]) -> None:
    settings = _settings(ns_env)
    ensure_topics(settings)
    p = Producer({"bootstrap.servers": settings.bootstrap})
    tid = "a" * 32
    events = [
        TaskEvent(tid, "add", EventKind.STARTED, 1, time.time(), worker_id="w1"),
        TaskEvent(tid, "add", EventKind.FAILED, 1, time.time(), error="boom", worker_id="w1"),
        TaskEvent(tid, "add", EventKind.RETRYING, 1, time.time(), error="boom", delay=0.5),
    ]
    # One partition, so the order read is the order written and the bad record is offset 3.
    for ev in events:
        p.produce(f"{settings.namespace}.events", encode_event(ev), partition=0)
    p.produce(f"{settings.namespace}.events", b"not an event", partition=0)  # skipped, not fatal
    assert p.flush(30) == 0
    cp = run("tail", "--from-beginning", "--json", "--max", "3", "--idle", "30", env=ns_env)
    assert cp.returncode == 0, cp.stderr
    rows = [json.loads(line) for line in cp.stdout.splitlines()]
    assert [r["kind"] for r in rows] == ["started", "failed", "retrying"]
    assert rows[2]["delay"] == 0.5 and rows[1]["error"] == "boom"
    cp = run("tail", "--from-beginning", "--idle", "3", env=ns_env)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert len(lines) == 3 and "retrying" in lines[2] and "retry in 0.50s" in lines[2]
    # Read to its end, the topic's undecodable record is skipped and said so, once, by offset.
    [warning] = [line for line in cp.stderr.splitlines() if "skipping an event" in line]
    assert f"{settings.namespace}.events[0]@3:" in warning, cp.stderr


# --- with a worker process ---------------------------------------------------------------------

APP = """
import time

from ringleader import App

app = App()


@app.task(name="sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="add")
def add(*xs: int) -> int:
    return sum(xs)


@app.task(name="fail", retries=0)
def fail() -> None:
    raise ValueError("this task always fails")
"""


@pytest.fixture
def worker_proc(ns_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    (tmp_path / "cliapp.py").write_text(textwrap.dedent(APP))
    env = dict(
        ns_env,
        RINGLEADER_SESSION_TIMEOUT_MS="6000",
        RINGLEADER_REBALANCE_TIMEOUT_MS="12000",
        RINGLEADER_HEARTBEAT_INTERVAL_MS="500",
        RINGLEADER_FENCE_MARGIN_MS="2000",
    )
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [RINGLEADER, "worker", "cliapp:app", "--id", "cli-w1", "--concurrency", "2"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        print((tmp_path / "worker.log").read_text()[-5000:])


@pytest.mark.broker
@pytest.mark.redis
@pytest.mark.slow
def test_submit_wait_against_a_running_worker(
    ns_env: dict[str, str], worker_proc: subprocess.Popen[str], broker_kind: str
) -> None:
    cp = run("submit", "add", "--args", "[2, 3, 4]", "--wait", "--timeout", "90", env=ns_env)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout) == 9 and "submitted" in cp.stderr
    cp = run("submit", "fail", "--wait", "--timeout", "60", env=ns_env)
    assert cp.returncode == 1
    assert "ValueError" in cp.stderr and "this task always fails" in cp.stderr
    no_traceback(cp)
    # A zero wait looks once: a result already recorded (the same idempotency key names the
    # same task, which ran above) prints with exit 0; a task still running exits 4.
    once = ("submit", "add", "--args", "[1]", "--idempotency-key", "one", "--wait")
    cp = run(*once, "--timeout", "60", env=ns_env)
    assert cp.returncode == 0 and json.loads(cp.stdout) == 1, cp.stderr
    cp = run(*once, "--timeout", "0", env=ns_env)
    assert cp.returncode == 0 and json.loads(cp.stdout) == 1, cp.stderr
    cp = run("submit", "sleep", "--args", "[2]", "--wait", "--timeout", "0", env=ns_env)
    assert cp.returncode == 4 and cp.stdout == "", cp.stderr
    assert "within 0s (it may still run" in cp.stderr
    no_traceback(cp)
    # status: the live member and its partitions, from the committed assignment
    deadline = time.monotonic() + 60
    while True:
        st = json.loads(run("status", "--json", env=ns_env).stdout)
        if st["members"] and st["members"][0]["partitions"] is not None:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    [m] = st["members"]
    assert m["worker_id"] == "cli-w1" and sorted(m["partitions"]) == [0, 1, 2]
    assert st["generation"] is not None and st["leader"] == m["member_id"]
    # Tansu's DescribeGroups carries no assignments: status reads the assignment log instead.
    assert st["assignment_source"] == ("live" if broker_kind == "kafka" else "log")
    assert [i["instance"] for i in st["instances"]] == ["cli-w1"]
    # the generation's protocol (cooperative by default), nothing pending to release, and what
    # the worker reports: the partitions it announces and a task it is running
    assert st["protocol"] == "cooperative" and st["revoking"] == {} and m["revoking"] == []
    cp = run("submit", "sleep", "--args", "[8]", env=ns_env)
    assert cp.returncode == 0, cp.stderr
    deadline = time.monotonic() + 30
    while True:
        st = json.loads(run("status", "--json", env=ns_env).stdout)
        [m] = st["members"]
        lr = m["longest_running"]
        if m["held"] == [0, 1, 2] and lr is not None and lr["task_id"] == cp.stdout.strip():
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.3)
    assert m["running"] >= 1 and lr["name"] == "sleep" and 0 <= lr["age"] < 30
    text = run("status", env=ns_env).stdout
    assert "protocol cooperative" in text and "pending revocations: none" in text, text
    [line] = [ln for ln in text.splitlines() if ln.startswith("  cli-w1 [")]
    assert "running " in line and ": sleep " in line, text
    # tail: the worker's events for the tasks above
    cp = run("tail", "--from-beginning", "--json", "--idle", "3", env=ns_env)
    kinds = [json.loads(line)["kind"] for line in cp.stdout.splitlines()]
    assert "started" in kinds and "succeeded" in kinds and "dead_lettered" in kinds
    # the worker stops cleanly on SIGTERM
    worker_proc.send_signal(signal.SIGTERM)
    assert worker_proc.wait(60) == 0


@pytest.mark.broker
@pytest.mark.redis
def test_results_of_api_submissions_are_read_by_the_cli_status(ns_env: dict[str, str]) -> None:
    with Client(settings=_settings(ns_env)) as c:
        c.submit_many([{"name": "add", "args": [i]} for i in range(50)])
    st = json.loads(run("status", "--json", env=ns_env).stdout)
    assert st["total_lag"] == 50


@pytest.mark.broker
@pytest.mark.redis
def test_submit_later_then_cancel_from_the_cli(ns_env: dict[str, str]) -> None:
    """`submit --delay` parks the task (status scheduled), `cancel` cancels it (exit 0), a
    second cancel says it had finished (exit 1); a bad --eta is a usage error."""
    cp = run("submit", "add", "--args", "[1, 2]", "--delay", "60", env=ns_env)
    assert cp.returncode == 0, cp.stderr
    task_id = cp.stdout.strip()
    with Client(settings=_settings(ns_env)) as c:
        assert str(c.status(task_id)) == "scheduled"
    cp = run("cancel", task_id, env=ns_env)
    assert cp.returncode == 0 and "cancelled: it will not start" in cp.stdout, cp.stderr
    cp = run("cancel", task_id, env=ns_env)
    assert cp.returncode == 1 and "already finished" in cp.stdout
    with Client(settings=_settings(ns_env)) as c:
        assert str(c.status(task_id)) == "cancelled"
    cp = run("submit", "add", "--eta", "2026-12-02T15:00:00", env=ns_env)
    assert cp.returncode == 2 and "UTC offset" in cp.stderr
    no_traceback(cp)
