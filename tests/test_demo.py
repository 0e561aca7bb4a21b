"""`ringleader demo`, README's first command, run as a person would: it brings up Tansu and
Valkey itself, kills a worker mid-run, and must end with every task completed once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

RINGLEADER = str(Path(sys.executable).with_name("ringleader"))


def test_demo_completes_every_task_after_a_worker_is_killed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGLEADER_")}
    cp = subprocess.run(
        [RINGLEADER, "demo", "--tasks", "300", "--task-seconds", "0.05",
         "--log-dir", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=280, env=env,
    )  # fmt: skip
    out = cp.stdout
    assert cp.returncode == 0, f"{out}\n{cp.stderr}"
    assert re.search(r"SIGKILLed w2 \(pid \d+\) with \d+/300 tasks complete", out), out
    assert re.search(r"new generation committed [\d.]+s after the kill", out), out
    assert "all 300 tasks complete" in out
    assert "completion records: 300 for 300 task ids" in out
    assert "all of them started by the killed worker: True" in out
    assert out.rstrip().endswith("embedded services stopped")
    # The survivors left the group on SIGTERM and no worker process is left running.
    assert "workers w1, w3 stopped cleanly on SIGTERM" in out
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out.split("\n", 2)[1])]
    assert len(pids) == 3
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), pid


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
