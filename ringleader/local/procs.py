"""Starting and stopping service processes: detached, logged, and never left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ringleader.local.progress import Say, Ticker, silent


class ServiceStartError(RuntimeError):
    """A service did not become ready; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def spawn(argv: Sequence[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start a process in its own session so it outlives the CLI that started it."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return proc.pid


def alive(pid: int) -> bool:
    try:
        # A zombie child of ours still answers kill(0); reap it first if it is ours.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; waits until the process is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.05)


def terminate_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """SIGTERM each child still running, give them `timeout` seconds together, SIGKILL what
    is left; the exit codes, in order."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait(10))
    return codes


def wait_ready(
    name: str,
    pid: int,
    log: Path,
    ready: Callable[[], bool],
    timeout: float,
    *,
    say: Say = silent,
    what: str | None = None,
) -> None:
    """Wait until `ready()`; on death or timeout, stop the process and raise with its log.
    `say` hears "waiting for WHAT" (default: `name`) and a line every few seconds after."""
    deadline = time.monotonic() + timeout
    ticker = Ticker(say, what or name)
    while time.monotonic() < deadline:
        ticker.tick()
        if not alive(pid):
            raise ServiceStartError(
                f"{name} exited during start-up. Log tail ({log}):\n{log_tail(log)}"
            )
        if ready():
            return
        time.sleep(0.1)
    stop(pid)
    raise ServiceStartError(
        f"{name} was not ready within {timeout:.0f}s. Log tail ({log}):\n{log_tail(log)}"
    )
