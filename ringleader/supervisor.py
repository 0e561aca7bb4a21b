"""`ringleader worker MODULE:APP --processes N`: one supervisor, N worker processes.

Python threads share one GIL, so CPU-bound tasks scale with processes (Celery's prefork pool,
Dramatiq's `-p`). The supervisor starts N children, `python -m ringleader.worker.run` each,
each a full group member with its own worker id `<id>-<i>` (`<id>` from `--id`, else
host-pid of the supervisor). A child that dies is restarted under the same id (the sticky
assignor can then hand its partitions back) after a backoff; its death is logged with its
exit code or signal and the tasks the ledger says it was running. SIGTERM/SIGINT are
forwarded to every child, which drains and commits; a child still running `stop_timeout`
seconds later is SIGKILLed.

The decisions are pure and take time as an argument (`RestartBackoff`, `CrashLoopBound`);
`Supervisor` is the process I/O around them.

Exit codes: 0 every child stopped cleanly after SIGTERM/SIGINT; 1 a child had to be killed
or exited non-zero while stopping; 2 bad app reference or configuration, or an app whose
import raises (also when a child exits 2: restarting cannot fix that); 5 children kept dying
(more than `max_deaths` deaths within `death_window` seconds).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

import redis as redis_lib

from ringleader import env as envmod
from ringleader.errors import ConfigError
from ringleader.worker import ledger
from ringleader.worker.ledger import RunningTask
from ringleader.worker.run import AppRefError, load_app

log = logging.getLogger("ringleader.supervisor")

EXIT_OK = 0
EXIT_UNCLEAN = 1
EXIT_CONFIG = 2
EXIT_CRASH_LOOP = 5

ENV_PREFIX = "RINGLEADER_SUPERVISOR_"
_POLL = 0.1  # seconds between looks at the children (a signal wakes the loop at once)


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    """RINGLEADER_SUPERVISOR_<FIELD> in the environment."""

    restart_delay: float = 1.0  # seconds before the first restart of a dead child
    restart_delay_max: float = 30.0  # the cap of the doubling delay
    stable_after: float = 60.0  # a child that lived this long restarts after restart_delay again
    max_deaths: int = 10  # more deaths than this within death_window: give up (exit 5)
    death_window: float = 60.0
    # After forwarding SIGTERM, how long children may drain (keep it above
    # RINGLEADER_WORKER_DRAIN_TIMEOUT) before they are SIGKILLed.
    stop_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in _SECONDS:
            _check_seconds(name, getattr(self, name))
        n = self.max_deaths
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            msg = f"max_deaths must be an integer >= 1, got {n!r}"
            raise ConfigError(msg, setting="max_deaths")
        if self.restart_delay_max < self.restart_delay:
            raise ConfigError(
                f"restart_delay_max ({self.restart_delay_max}) must be >= restart_delay "
                f"({self.restart_delay})",
                setting="restart_delay_max",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SupervisorSettings:
        return envmod.from_env(cls, environ, prefix=ENV_PREFIX)


_SECONDS = ("restart_delay", "restart_delay_max", "stable_after", "death_window", "stop_timeout")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}", setting=name)


# ---- pure decisions ---------------------------------------------------------------------


class RestartBackoff:
    """One child slot's restart delay: `first`, doubling with each death that came within
    `stable_after` of the child's start, at most `cap`; a stable run resets it."""

    def __init__(self, first: float, cap: float, stable_after: float) -> None:
        self.first = first
        self.cap = cap
        self.stable_after = stable_after
        self._quick = 0  # deaths in a row that came soon after their start

    def delay(self, started: float, died: float) -> float:
        """Seconds to wait before restarting a child that ran from `started` to `died`."""
        if died - started >= self.stable_after:
            self._quick = 0
        delay = min(self.cap, self.first * 2.0 ** min(self._quick, 60))
        self._quick += 1
        return delay


class CrashLoopBound:
    """Deaths of any child, over a sliding window: more than `max_deaths` within `window`
    seconds means they keep dying (a broken deploy, a dependency down), not bad luck."""

    def __init__(self, max_deaths: int, window: float) -> None:
        self.max_deaths = max_deaths
        self.window = window
        self._deaths: deque[float] = deque()

    def died(self, now: float) -> bool:
        """Count a death at `now`; True when the bound is exceeded."""
        self._deaths.append(now)
        return self.recent(now) > self.max_deaths

    def recent(self, now: float) -> int:
        """Deaths within the window ending at `now`."""
        while self._deaths and self._deaths[0] <= now - self.window:
            self._deaths.popleft()
        return len(self._deaths)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def describe_tasks(tasks: Sequence[RunningTask] | None, now: float) -> str:
    """What the ledger says a dead child was running (wall-clock `now`)."""
    if tasks is None:
        return "the tasks it was running are unknown (Redis did not answer)"
    if not tasks:
        return "it was running no task"
    runs = ", ".join(
        f"{t.task_id} ({t.name}, started {max(0.0, now - t.started_at):.1f}s before)" for t in tasks
    )
    return f"it was running {'task' if len(tasks) == 1 else f'{len(tasks)} tasks:'} {runs}"


# ---- process I/O ------------------------------------------------------------------------


def ledger_reader(
    client: redis_lib.Redis[bytes], namespace: str
) -> Callable[[str], list[RunningTask] | None]:
    """What the ledger says a worker id had in progress (None: Redis did not answer), read
    once its process is dead and then cleared: a dead child's record would otherwise stay,
    and its replacement records its own runs under the same worker id."""
    prefix = f"ringleader:{namespace}"

    def take(worker_id: str) -> list[RunningTask] | None:
        try:
            tasks = ledger.running(client, prefix, worker_id)
            ledger.clear_running(client, prefix, worker_id)
        except redis_lib.RedisError as e:
            log.warning("cannot read the task ledger of %s: %s", worker_id, e)
            return None
        return tasks

    return take


@dataclass(slots=True)
class _Slot:
    worker_id: str
    backoff: RestartBackoff
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None  # monotonic time of a pending restart


class Supervisor:
    """Runs `command(worker_id)` once per worker id until a signal or a crash loop."""

    def __init__(
        self,
        command: Callable[[str], list[str]],
        worker_ids: Sequence[str],
        settings: SupervisorSettings,
        *,
        tasks_of: Callable[[str], list[RunningTask] | None] = lambda worker_id: [],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._command = command
        self._settings = s = settings
        self._slots = [
            _Slot(wid, RestartBackoff(s.restart_delay, s.restart_delay_max, s.stable_after))
            for wid in worker_ids
        ]
        self._bound = CrashLoopBound(s.max_deaths, s.death_window)
        self._tasks_of = tasks_of
        self._clock = clock
        self._wall = wall
        self._wake = threading.Event()
        self._signals: list[int] = []
        self._forwarded = 0  # how many of `_signals` the children have been sent
        self._outcome: int | None = None  # set when giving up (crash loop, configuration)
        self._stop_deadline: float | None = None
        self._clean = True  # every child stopped by us exited 0

    # ---- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Start the children and supervise them; returns the process exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        now = self._clock()
        for slot in self._slots:
            self._spawn(slot, now)
        while True:
            self._wake.wait(_POLL)
            self._wake.clear()
            now = self._clock()
            self._forward_signals(now)
            for slot in self._slots:
                self._reap(slot, now)
            if self._stop_deadline is None:
                self._restart_due(now)
            elif self._all_exited():
                return self._exit_code()
            elif now >= self._stop_deadline:
                self._kill_stragglers()
                return self._exit_code()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)  # handled by the loop: nothing here that may block
        self._wake.set()

    def _forward_signals(self, now: float) -> None:
        for signum in self._signals[self._forwarded :]:
            log.info("%s: stopping the children", signal.Signals(signum).name)
            self._stop(signum, now)
        self._forwarded = len(self._signals)

    def _stop(self, signum: int, now: float) -> None:
        """Send `signum` to every running child (each drains and commits on it) and cancel
        pending restarts; the loop then waits for them, up to stop_timeout."""
        if self._stop_deadline is None:
            self._stop_deadline = now + self._settings.stop_timeout
        for slot in self._slots:
            slot.restart_at = None
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signum)

    def _give_up(self, code: int, why: str, now: float) -> None:
        if self._outcome is None:
            log.error("%s; stopping the other children", why)
            self._outcome = code
        self._stop(signal.SIGTERM, now)

    # ---- children -----------------------------------------------------------------------

    def _spawn(self, slot: _Slot, now: float) -> None:
        slot.restart_at = None
        slot.started = now
        try:
            slot.proc = subprocess.Popen(self._command(slot.worker_id), stdin=subprocess.DEVNULL)
        except OSError as e:  # counts as a death: a crash loop of these ends in exit 5
            log.error("cannot start worker %s: %s", slot.worker_id, e)
            slot.proc = None
            self._died(slot, now, f"could not start ({e})")
            return
        log.info("worker %s started (pid %d)", slot.worker_id, slot.proc.pid)

    def _reap(self, slot: _Slot, now: float) -> None:
        proc = slot.proc
        if proc is None or proc.poll() is None:
            return
        slot.proc = None
        rc = proc.returncode
        if self._stop_deadline is not None:  # stopping: an exit is expected, never restarted
            self._stopped(slot, proc.pid, rc)
            return
        what = f"(pid {proc.pid}) {describe_exit(rc)} after {now - slot.started:.1f}s"
        tasks = describe_tasks(self._tasks_of(slot.worker_id), self._wall())
        if rc == EXIT_CONFIG:
            log.error("worker %s %s; %s", slot.worker_id, what, tasks)
            why = f"worker {slot.worker_id} exited 2 (bad app reference or configuration)"
            self._give_up(EXIT_CONFIG, why, now)
            return
        self._died(slot, now, f"{what}; {tasks}")

    def _stopped(self, slot: _Slot, pid: int, rc: int) -> None:
        if rc == 0:
            log.info("worker %s (pid %d) stopped", slot.worker_id, pid)
            return
        self._clean = False
        tasks = describe_tasks(self._tasks_of(slot.worker_id), self._wall())
        log.error(f"worker {slot.worker_id} (pid {pid}) {describe_exit(rc)} at the stop; {tasks}")

    def _died(self, slot: _Slot, now: float, what: str) -> None:
        if self._bound.died(now):
            log.error("worker %s %s", slot.worker_id, what)
            s = self._settings
            why = (
                f"crash loop: workers died {self._bound.recent(now)} times within "
                f"{s.death_window:g}s (RINGLEADER_SUPERVISOR_MAX_DEATHS={s.max_deaths})"
            )
            self._give_up(EXIT_CRASH_LOOP, why, now)
            return
        delay = slot.backoff.delay(slot.started, now)
        slot.restart_at = now + delay
        log.warning("worker %s %s; restarting it in %.1fs", slot.worker_id, what, delay)

    def _restart_due(self, now: float) -> None:
        for slot in self._slots:
            if slot.restart_at is not None and now >= slot.restart_at:
                self._spawn(slot, now)

    def _all_exited(self) -> bool:
        return all(slot.proc is None for slot in self._slots)

    def _kill_stragglers(self) -> None:
        for slot in self._slots:
            proc = slot.proc
            if proc is None:
                continue
            wait = self._settings.stop_timeout
            log.error(f"worker {slot.worker_id} still running {wait:g}s after the stop: SIGKILL")
            proc.kill()
            proc.wait()
            slot.proc = None
            self._stopped(slot, proc.pid, proc.returncode)

    def _exit_code(self) -> int:
        if self._outcome is not None:
            return self._outcome
        return EXIT_OK if self._clean else EXIT_UNCLEAN


def worker_command(
    app_ref: str, concurrency: int | None, log_level: str
) -> Callable[[str], list[str]]:
    """The command line of one worker child: the same app, concurrency and log level."""

    def command(worker_id: str) -> list[str]:
        cmd = [sys.executable, "-m", "ringleader.worker.run", app_ref, "--id", worker_id]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        return [*cmd, "--log-level", log_level]

    return command


def run_supervisor(
    app_ref: str, worker_id: str | None, concurrency: int | None, processes: int
) -> int:
    """`ringleader worker --processes N` (N > 1); returns the exit code."""
    try:
        settings = SupervisorSettings.from_env()
        # Loaded here too for its namespace and Redis URL (where the ledger is), and so that
        # a bad reference fails once, before N children fail with it.
        app = load_app(app_ref)
    except (AppRefError, ConfigError) as e:
        print(f"ringleader worker: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception:  # noqa: BLE001 - the user's module raised: every child would too
        traceback.print_exc()
        print(f"ringleader worker: importing {app_ref!r} failed (above)", file=sys.stderr)
        return EXIT_CONFIG
    app_settings = app.settings
    app.close()
    base = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    client: redis_lib.Redis[bytes] = redis_lib.Redis.from_url(
        app_settings.redis, socket_timeout=5, socket_connect_timeout=5
    )
    supervisor = Supervisor(
        worker_command(app_ref, concurrency, level),
        [f"{base}-{i}" for i in range(processes)],
        settings,
        tasks_of=ledger_reader(client, app_settings.namespace),
    )
    try:
        return supervisor.run()
    finally:
        client.close()
