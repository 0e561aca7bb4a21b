"""`ringleader demo`, README's first command, run as a person would: it brings up Tansu and
Valkey itself, kills a worker mid-run, and must end with every task completed once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

pytestmark = [pytest.mark.slow]

RINGLEADER = str(Path(sys.executable).with_name("ringleader"))


def test_demo_completes_every_task_after_a_worker_is_killed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGLEADER_")}
    stdout = tmp_path / "demo.stdout"
    with open(stdout, "w") as fh:
        proc = subprocess.Popen(
            [RINGLEADER, "demo", "--tasks", "300", "--task-seconds", "0.05",
             "--log-dir", str(tmp_path)],
            stdout=fh, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
    # Phase lines are read as they come (with when they came), to show they are live.
    heard: list[tuple[float, str]] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, heard), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=280)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    out = stdout.read_text()
    err = "\n".join(line for _, line in heard)
    assert proc.returncode == 0, f"{out}\n{err}"
    assert re.search(r"SIGKILLed w2 \(pid \d+\) with \d+/300 tasks complete", out), out
    assert re.search(r"new generation committed [\d.]+s after the kill", out), out
    assert "all 300 tasks complete" in out
    assert "completion records: 300 for 300 task ids" in out
    assert "all of them started by the killed worker: True" in out
    assert out.rstrip().endswith("embedded services stopped")
    assert not any(line.startswith("demo [") for line in out.splitlines())  # stdout as before
    # The survivors left the group on SIGTERM and no worker process is left running.
    assert "workers w1, w3 stopped cleanly on SIGTERM" in out
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out.split("\n", 2)[1])]
    assert len(pids) == 3
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), pid
    _check_phases(heard, out, pids)


def _read_lines(stream: IO[str], into: list[tuple[float, str]]) -> None:
    for line in stream:
        into.append((time.monotonic(), line.rstrip("\n")))


def _check_phases(heard: list[tuple[float, str]], out: str, pids: list[int]) -> None:
    """One stderr line per phase, in order, each with the seconds since the demo began; the
    generations they name are the report's; they came while the demo ran, not at its end."""
    phases = [(at, m[1], m[2]) for at, line in heard if (m := PHASE.fullmatch(line))]
    elapsed = [secs for _, secs, _ in phases]
    assert elapsed == sorted(elapsed, key=float), elapsed
    found = _in_order([text for _, _, text in phases], [
        r"starting the embedded services \(Tansu, Valkey\)",
        r"local: Tansu ready in [\d.]+s",
        r"local: Valkey ready in [\d.]+s",
        r"starting 3 worker processes: w1 \(pid (\d+)\), w2 \(pid (\d+)\), w3 \(pid (\d+)\)",
        r"waiting for the group to settle on a committed assignment covering every worker",
        r"group settled: generation (\d+) committed [\d.]+s after the workers started",
        r"submitting 300 tasks",
        r"running: waiting for 100 of 300 tasks to complete",
        rf"SIGKILL w2 \(pid {pids[1]}\) mid-run, \d+/300 tasks complete",
        r"waiting for failover: a committed generation without w2",
        r"failover: generation (\d+) committed [\d.]+s after the kill",
        r"draining: waiting for the other \d+ of 300 tasks to complete",
        r"checking: executions and completion records of 300 tasks",
        r"stopping the workers and the embedded services",
    ])  # fmt: skip
    assert [int(p) for p in found[3].groups()] == pids
    settled, moved = int(found[5][1]), int(found[10][1])
    assert re.search(rf"group settled in [\d.]+s: generation {settled}, leader", out), out
    assert re.search(rf"after the kill: generation {moved}, leader", out), out
    assert moved > settled
    # Live: the kill's line was read seconds before the failover's (a session timeout apart),
    # which a buffered stderr, written out at exit, would not show.
    kill_at = next(at for at, _, text in phases if text.startswith("SIGKILL "))
    failover_at = next(at for at, _, text in phases if text.startswith("failover: "))
    assert failover_at - kill_at > 1.0, (kill_at, failover_at)


PHASE = re.compile(r"demo \[ *([\d.]+)s\] (.*)")


def _in_order(lines: list[str], patterns: list[str]) -> list[re.Match[str]]:
    found, at = [], 0
    for pat in patterns:
        hit = next(
            ((i, m) for i in range(at, len(lines)) if (m := re.fullmatch(pat, lines[i]))), None
        )
        assert hit is not None, f"no phase {pat!r} after {at} in:\n" + "\n".join(lines)
        at, m = hit[0] + 1, hit[1]
        found.append(m)
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
