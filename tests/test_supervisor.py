"""The supervisor of `ringleader worker --processes N` without a broker: its pure decisions
(restart backoff, the crash-loop bound) with time passed in, its settings, and its process
loop over stand-in children (`python -c`) that exit, drain or hang as a worker would."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ringleader.errors import ConfigError
from ringleader.supervisor import (
    EXIT_CONFIG,
    EXIT_CRASH_LOOP,
    EXIT_OK,
    EXIT_UNCLEAN,
    CrashLoopBound,
    RestartBackoff,
    Supervisor,
    SupervisorSettings,
    describe_exit,
    describe_tasks,
    worker_command,
)
from ringleader.worker.ledger import RunningTask

# ---- restart backoff ----------------------------------------------------------------------


def test_restart_delay_doubles_for_quick_deaths_up_to_the_cap() -> None:
    b = RestartBackoff(first=1.0, cap=30.0, stable_after=60.0)
    now, delays = 1000.0, []
    for _ in range(8):
        started = now
        now += 2.0  # each child dies 2 s after its start
        delays.append(b.delay(started, now))
        now += delays[-1]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_stable_run_resets_the_restart_delay() -> None:
    b = RestartBackoff(first=0.5, cap=30.0, stable_after=60.0)
    assert [b.delay(0.0, 1.0) for _ in range(3)] == [0.5, 1.0, 2.0]
    assert b.delay(100.0, 160.0) == 0.5  # it lived stable_after: a fresh start
    assert b.delay(200.0, 201.0) == 1.0
    assert b.delay(300.0, 359.9) == 2.0  # just short of stable: still doubling


def test_the_backoff_never_overflows() -> None:
    b = RestartBackoff(first=1.0, cap=5.0, stable_after=60.0)
    assert max(b.delay(0.0, 0.0) for _ in range(2000)) == 5.0


# ---- crash-loop bound ---------------------------------------------------------------------


def test_more_than_max_deaths_within_the_window_is_a_crash_loop() -> None:
    bound = CrashLoopBound(max_deaths=3, window=60.0)
    assert [bound.died(t) for t in (0.0, 10.0, 20.0)] == [False, False, False]
    assert bound.died(59.0)  # a 4th within 60 s
    assert bound.recent(59.0) == 4


def test_deaths_older_than_the_window_do_not_count() -> None:
    bound = CrashLoopBound(max_deaths=3, window=60.0)
    # one death every 20 s forever: at most 3 in any 60 s window (the one at t-60 is out)
    assert not any(bound.died(20.0 * i) for i in range(100))
    assert bound.recent(20.0 * 99) == 3
    assert bound.recent(20.0 * 99 + 1000) == 0


def test_a_burst_after_a_quiet_spell_is_judged_on_its_own() -> None:
    bound = CrashLoopBound(max_deaths=2, window=10.0)
    assert not bound.died(0.0) and not bound.died(1.0)
    assert not bound.died(100.0) and not bound.died(101.0)
    assert bound.died(102.0)


# ---- descriptions -------------------------------------------------------------------------


def test_describe_exit_names_the_signal_or_the_code() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-15) == "was killed by SIGTERM"
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(0) == "exited with code 0"


def test_describe_tasks_names_each_running_task() -> None:
    one = [RunningTask("t1", "die", 100.0)]
    assert describe_tasks(one, 102.5) == "it was running task t1 (die, started 2.5s before)"
    two = [RunningTask("a", "count", 99.0), RunningTask("b", "die", 100.0)]
    text = describe_tasks(two, 100.0)
    assert text.startswith("it was running 2 tasks: a (count") and "b (die" in text
    assert describe_tasks([], 0.0) == "it was running no task"
    assert "unknown" in describe_tasks(None, 0.0)


def test_worker_command_gives_every_child_the_same_app_and_concurrency() -> None:
    cmd = worker_command("tasks:app", 3, "INFO")
    assert cmd("h-1") == [
        sys.executable, "-m", "ringleader.worker.run", "tasks:app", "--id", "h-1",
        "--concurrency", "3", "--log-level", "INFO",
    ]  # fmt: skip
    assert "--concurrency" not in worker_command("tasks:app", None, "INFO")("h-1")


# ---- settings -----------------------------------------------------------------------------


def test_settings_come_from_the_environment() -> None:
    s = SupervisorSettings.from_env(
        {
            "RINGLEADER_SUPERVISOR_MAX_DEATHS": "4",
            "RINGLEADER_SUPERVISOR_DEATH_WINDOW": "30",
            "RINGLEADER_SUPERVISOR_RESTART_DELAY": "",  # empty: the default
        }
    )
    assert (s.max_deaths, s.death_window, s.restart_delay) == (4, 30.0, 1.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RINGLEADER_SUPERVISOR_MAX_DEATHS": "many"}, "RINGLEADER_SUPERVISOR_MAX_DEATHS must"),
        ({"RINGLEADER_SUPERVISOR_MAX_DEATHS": "0"}, "RINGLEADER_SUPERVISOR_MAX_DEATHS: "),
        ({"RINGLEADER_SUPERVISOR_STOP_TIMEOUT": "-1"}, "RINGLEADER_SUPERVISOR_STOP_TIMEOUT: "),
        ({"RINGLEADER_SUPERVISOR_DEATH_WINDOW": "nan"}, "RINGLEADER_SUPERVISOR_DEATH_WINDOW"),
        (
            {
                "RINGLEADER_SUPERVISOR_RESTART_DELAY": "10",
                "RINGLEADER_SUPERVISOR_RESTART_DELAY_MAX": "5",
            },
            "RINGLEADER_SUPERVISOR_RESTART_DELAY_MAX: ",
        ),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        SupervisorSettings.from_env(env)
    assert e.value.setting is not None and e.value.setting.startswith("RINGLEADER_SUPERVISOR_")


# ---- the process loop, over stand-in children ---------------------------------------------

# A stand-in worker: writes <dir>/<id>.ready once its signal handlers are in place, then
# "drains" for a moment on SIGTERM/SIGINT and exits 0 (or hangs on it, or exits at once).
CHILD = """
import os, signal, sys, time
d, wid, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def on_term(signum, frame):
    if mode == "hang":
        return
    time.sleep(0.2)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))
open(os.path.join(d, wid + ".ready"), "w").close()
while True:
    time.sleep(0.05)
"""

FAST = SupervisorSettings(restart_delay=0.05, restart_delay_max=0.2, stop_timeout=5.0)


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """Supervisor.run installs SIGTERM/SIGINT handlers in this (pytest's) process."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def stand_in(tmp: Path, mode: Callable[[str], str]) -> Callable[[str], list[str]]:
    return lambda wid: [sys.executable, "-c", CHILD, str(tmp), wid, mode(wid)]


def signal_when(cond: Callable[[], bool], signum: int, timeout: float = 30.0) -> threading.Thread:
    """From a thread: once `cond()` holds, send `signum` to this process (the supervisor)."""

    def go() -> None:
        deadline = time.monotonic() + timeout
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def ready(tmp: Path, *ids: str) -> Callable[[], bool]:
    return lambda: all((tmp / f"{i}.ready").exists() for i in ids)


def test_sigterm_is_forwarded_and_children_that_drain_make_exit_0(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ringleader.supervisor")
    sup = Supervisor(stand_in(tmp_path, lambda w: "drain"), ["a-0", "a-1", "a-2"], FAST)
    signal_when(ready(tmp_path, "a-0", "a-1", "a-2"), signal.SIGTERM)
    assert sup.run() == EXIT_OK
    stopped = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
    assert len(stopped) == 3, stopped


def test_a_child_that_keeps_dying_ends_in_the_crash_loop_exit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SupervisorSettings(
        restart_delay=0.05, restart_delay_max=0.1, max_deaths=3, death_window=60.0
    )
    # a-0 dies at once every time; a-1 is healthy and must be stopped cleanly at the end
    mode = {"a-0": "exit1", "a-1": "drain"}
    sup = Supervisor(
        stand_in(tmp_path, mode.__getitem__),
        ["a-0", "a-1"],
        settings,
        tasks_of=lambda wid: [RunningTask("t9", "boom", time.time())],
    )
    caplog.set_level(logging.INFO, "ringleader.supervisor")
    t0 = time.monotonic()
    assert sup.run() == EXIT_CRASH_LOOP
    assert time.monotonic() - t0 < 30
    text = caplog.text
    assert text.count("worker a-0 (pid") == 4  # 3 deaths restarted, the 4th is the loop
    assert "exited with code 1" in text and "it was running task t9 (boom" in text
    before, _, after = text.partition("crash loop: workers died 4 times within 60s")
    assert after, text
    assert "a-1 (pid" not in before and "a-1 (pid" in after  # stopped, not counted a death


def test_a_dead_child_is_restarted_under_its_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ringleader.supervisor")
    deaths = {"n": 0}

    def mode(wid: str) -> str:
        deaths["n"] += 1
        return "exit3" if deaths["n"] == 1 else "drain"  # dies once, then runs

    sup = Supervisor(stand_in(tmp_path, mode), ["b-0"], FAST)
    signal_when(ready(tmp_path, "b-0"), signal.SIGINT)
    assert sup.run() == EXIT_OK
    started = [r.getMessage() for r in caplog.records if "started" in r.getMessage()]
    assert len(started) == 2 and all(m.startswith("worker b-0 started") for m in started)
    assert "exited with code 3" in caplog.text and "restarting it in" in caplog.text


def test_a_child_still_running_after_the_stop_timeout_is_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SupervisorSettings(stop_timeout=1.0)
    sup = Supervisor(stand_in(tmp_path, lambda w: "hang"), ["c-0"], settings)
    signal_when(ready(tmp_path, "c-0"), signal.SIGTERM)
    t0 = time.monotonic()
    assert sup.run() == EXIT_UNCLEAN
    assert 1.0 <= time.monotonic() - t0 < 10
    assert "still running 1s after the stop: SIGKILL" in caplog.text
    assert "was killed by SIGKILL at the stop" in caplog.text


def test_a_child_exiting_2_is_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mode = {"d-0": "exit2", "d-1": "drain"}
    sup = Supervisor(stand_in(tmp_path, mode.__getitem__), ["d-0", "d-1"], FAST)
    assert sup.run() == EXIT_CONFIG
    assert caplog.text.count("worker d-0 (pid") == 1
    assert "exited 2 (bad app reference or configuration)" in caplog.text
