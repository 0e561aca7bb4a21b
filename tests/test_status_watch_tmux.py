"""`ringleader status --watch` in a real terminal: tmux runs it in a pane, `capture-pane`
reads the screen. It shows the first worker, then the second one once it joins, and Ctrl-C
(`send-keys`) ends it. Its own tmux server (`-L`), killed after."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ringleader.client import Client
from tests.worker import procs

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TMUX = shutil.which("tmux")


@contextmanager
def tmux_pane(cmd: list[str], env: dict[str, str]) -> Iterator[tuple[list[str], str]]:
    """A detached 160x50 tmux session running `cmd`; yields (tmux argv prefix, target)."""
    assert TMUX is not None, "tmux is installed by scripts/setup.sh"
    base = [TMUX, "-L", f"rl-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    shell = f"env {exports} {' '.join(cmd)}; echo watch-exited-$?; sleep 600"
    subprocess.run([*base, "new-session", "-d", "-s", "w", "-x", "160", "-y", "50", shell],
                   check=True)  # fmt: skip
    try:
        yield base, "w"
    finally:
        subprocess.run([*base, "kill-server"], check=False, capture_output=True)


def screen(base: list[str], target: str) -> str:
    out = subprocess.run([*base, "capture-pane", "-p", "-t", target], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout


def has_row(text: str, worker: str) -> bool:
    return re.search(rf"^\s*{worker}\s", text, re.MULTILINE) is not None


def test_watch_shows_members_and_updates_when_a_worker_joins(
    kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    settings = procs.namespace(kafka_bootstrap, redis_url, unique_name, partitions=4)
    cmd = [sys.executable, "-m", "ringleader.cli", "status", "--watch", "--interval", "1",
           "--namespace", settings.namespace, "--bootstrap", kafka_bootstrap,
           "--redis", redis_url]  # fmt: skip
    env = {"PYTHONPATH": str(procs.ROOT), "TERM": "xterm-256color", "HOME": os.environ["HOME"]}
    with procs.workers_of(settings, tmp_path) as ws, Client(settings=settings) as client:
        ws.start("w1", concurrency=2)
        assert client.submit("count", kwargs={"n": 1}).result(timeout=120) == 1
        with tmux_pane(cmd, env) as (base, target):
            last = ""

            def shows(*workers: str) -> bool:
                nonlocal last
                last = screen(base, target)
                return "generation" in last and all(has_row(last, w) for w in workers)

            try:
                procs.wait_until(lambda: shows("w1"), 60, "the watch to show w1")
                assert "tasks/s" in last and "dead letters" in last
                ws.start("w2", concurrency=2)
                procs.wait_until(lambda: shows("w1", "w2"), 90, "the watch to show w2 join")
                subprocess.run([*base, "send-keys", "-t", target, "C-c"], check=True)
                procs.wait_until(
                    lambda: "watch-exited-0" in screen(base, target), 30, "Ctrl-C to end it"
                )
            except AssertionError:
                print(last)
                raise
