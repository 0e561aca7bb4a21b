"""`ringleader local` as a person runs it, and start-up failures that leave nothing behind."""

from __future__ import annotations

import json
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


def up_and_check(d: Path, *services_args: str) -> list[int]:
    """`local up ... --json`; checks both services answer; returns the stack's pids."""
    up = run_cli("local", "up", *services_args, "--dir", str(d), "--json")
    assert up.returncode == 0, up.stderr
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
    return pids


def test_up_json_status_down_leaves_no_process(tmp_path: Path) -> None:
    d = tmp_path / "stack"
    pids = up_and_check(d, "--tansu", "--valkey")
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
        pids = up_and_check(d, "--kafka", "--redis")
        down = run_cli("local", "down", "--dir", str(d))
        assert down.returncode == 0, down.stderr
        assert not any(procs.alive(p) for p in pids)


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
