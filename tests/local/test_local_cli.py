"""`ringleader local` as a person runs it, and start-up failures that leave nothing behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from ringleader.local import procs, services


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ringleader.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def up_and_check(d: Path, *services_args: str) -> tuple[list[int], list[str]]:
    """`local up ... --json`; checks both services answer and stdout is one JSON object
    only; returns the stack's pids and the progress lines `up` wrote on stderr."""
    up = run_cli("local", "up", *services_args, "--dir", str(d), "--json")
    assert up.returncode == 0, up.stderr
    assert up.stdout.count("\n") == 1, up.stdout  # progress never reaches stdout
    conn = json.loads(up.stdout)
    assert set(conn) == {"bootstrap", "redis"}
    stack = services.load(d)
    assert stack is not None
    pids = [s.pid for s in stack.services]
    try:
        assert redis.Redis.from_url(conn["redis"]).ping()
        host, port = conn["bootstrap"].split(":")
        assert procs.port_open(host, int(port))
    except BaseException:
        run_cli("local", "down", "--dir", str(d))
        raise
    return pids, up.stderr.splitlines()


def assert_in_order(lines: list[str], patterns: list[str]) -> list[re.Match[str]]:
    """Each pattern matches a whole line, each after the previous one's; the matches."""
    found, at = [], 0
    for pat in patterns:
        for i in range(at, len(lines)):
            if m := re.fullmatch(pat, lines[i]):
                found.append(m)
                at = i + 1
                break
        else:
            raise AssertionError(f"no line {pat!r} after line {at} in:\n" + "\n".join(lines))
    return found


def assert_progress_is_throttled(lines: list[str]) -> None:
    """Every stderr line is a `local:` one; "still waiting" lines come seconds apart."""
    assert all(line.startswith("local: ") for line in lines), lines
    waits = [float(m[1]) for line in lines if (m := re.search(r" \.\.\. \(([\d.]+)s\)$", line))]
    assert all(w >= 2.5 for w in waits), waits  # none before a few seconds of waiting


def test_up_json_status_down_leaves_no_process(tmp_path: Path) -> None:
    d = tmp_path / "stack"
    pids, said = up_and_check(d, "--tansu", "--valkey")
    assert_progress_is_throttled(said)
    assert_in_order(said, [
        r"local: starting Tansu on 127\.0\.0\.1:\d+ \(pid \d+\)",
        r"local: waiting for Tansu to answer metadata on 127\.0\.0\.1:\d+",
        r"local: Tansu ready in [\d.]+s",
        r"local: starting Valkey on 127\.0\.0\.1:\d+ \(pid \d+\)",
        r"local: waiting for Valkey to answer PING on 127\.0\.0\.1:\d+",
        r"local: Valkey ready in [\d.]+s",
    ])  # fmt: skip
    try:
        st = run_cli("local", "status", "--dir", str(d), "--json")
        assert json.loads(st.stdout)["running"] is True
        again = run_cli("local", "up", "--tansu", "--dir", str(d))
        assert again.returncode == 1 and "already runs a stack" in again.stderr
    finally:
        down = run_cli("local", "down", "--dir", str(d))
    assert down.returncode == 0
    assert "tansu" in down.stdout
    assert not any(procs.alive(p) for p in pids)
    assert run_cli("local", "status", "--dir", str(d)).returncode == 3


@pytest.mark.slow
def test_kafka_and_redis_up_down_up_again_in_the_same_dir(tmp_path: Path) -> None:
    d = tmp_path / "stack"
    for _ in range(2):  # the second `up` finds the first one's formatted storage
        pids, said = up_and_check(d, "--kafka", "--redis")
        assert_kafka_redis_progress(said, pids)
        down = run_cli("local", "down", "--dir", str(d))
        assert down.returncode == 0, down.stderr
        assert not any(procs.alive(p) for p in pids)


def assert_kafka_redis_progress(said: list[str], pids: list[int]) -> None:
    """What `up --kafka --redis` says while it starts, in order, naming the real pids."""
    assert_progress_is_throttled(said)
    addr = r"127\.0\.0\.1:(\d+)"
    m = assert_in_order(said, [
        r"local: formatting KRaft storage for node 1",
        rf"local: starting Apache Kafka 4\.1\.1 node 1 on {addr} \(pid (\d+)\)",
        rf"local: waiting for Kafka node 1 to listen on {addr}",
        rf"local: waiting for Kafka to answer metadata on {addr}",
        r"local: Kafka ready in [\d.]+s",
        rf"local: starting Redis on {addr} \(pid (\d+)\)",
        rf"local: waiting for Redis to answer PING on {addr}",
        r"local: Redis ready in [\d.]+s",
    ])  # fmt: skip
    assert [int(m[1][2]), int(m[5][2])] == pids
    assert m[1][1] == m[2][1] == m[3][1]  # the same Kafka port throughout


def test_up_without_services_is_a_usage_error(tmp_path: Path) -> None:
    r = run_cli("local", "up", "--dir", str(tmp_path))
    assert r.returncode == 2
    assert "nothing to start" in r.stderr


def test_service_that_dies_reports_log_tail_and_leaves_nothing(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    pid = procs.spawn(["sh", "-c", "echo fatal: port in use; exit 3"], log, cwd=tmp_path)
    with pytest.raises(procs.ServiceStartError, match="fatal: port in use"):
        procs.wait_ready("svc", pid, log, lambda: False, timeout=30)
    assert not procs.alive(pid)


def test_service_that_hangs_is_stopped_after_timeout(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    pid = procs.spawn(["sh", "-c", "echo starting slowly; exec sleep 60"], log, cwd=tmp_path)
    with pytest.raises(procs.ServiceStartError, match=r"(?s)not ready within 1s.*starting slowly"):
        procs.wait_ready("svc", pid, log, lambda: False, timeout=1)
    assert not procs.alive(pid)
