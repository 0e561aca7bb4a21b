"""`Member`: what a worker embeds to take part in the group.

A background thread drives the pure `Membership` machine: it hands each request command to
its executor (`coordinator.executor`: group requests, the assignor and the 2PC commit and
read), runs each local command (assign, revoke, fenced) through the worker's callbacks, and
feeds the outcomes back as events. Heartbeats are sent by this thread, so they continue while
the worker's own threads run tasks.

The callbacks and their contract: `coordinator.callbacks`. Close abandons a pending request,
never a pending assign, revoke or fenced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ringleader.coordinator.assignors import get_assignor
from ringleader.coordinator.callbacks import (
    AssignedCallback,
    Callbacks,
    FencedCallback,
    LostCallback,
    RevokedCallback,
)
from ringleader.coordinator.executor import (
    BusyReport,
    Executor,
    GroupExecutor,
    Publisher,
    no_busy,
    publish_committed,
)
from ringleader.coordinator.groupapi import CoordinatorAddress
from ringleader.coordinator.membership import Membership
from ringleader.coordinator.messages import (
    TERMINAL_STATES,
    Assign,
    Command,
    Event,
    Fenced,
    Leave,
    LeaveResponse,
    LocalCommand,
    Pause,
    Released,
    Resume,
    Revoke,
    Start,
    State,
    Tick,
)
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.releases import Releases
from ringleader.coordinator.settings import MemberSettings
from ringleader.security import KafkaSecurity

log = logging.getLogger("ringleader.coordinator.member")


_IDLE_WAIT = 1.0


class Member:
    """One worker's membership in the group `settings.group_id`."""

    def __init__(
        self,
        bootstrap: str,
        settings: MemberSettings,
        *,
        topic: str,
        partitions: int,
        assignment_topic: str,
        metadata: MemberMetadata,
        on_assigned: AssignedCallback,
        on_revoked: RevokedCallback,
        on_fenced: FencedCallback | None = None,
        on_lost: LostCallback | None = None,
        publisher: Publisher = publish_committed,
        clock: Callable[[], float] = time.monotonic,
        executor: Executor | None = None,
        busy: BusyReport = no_busy,
        security: KafkaSecurity | None = None,
    ) -> None:
        """`executor` replaces the network half (tests); by default a `GroupExecutor`.
        `busy` reports the worker's busy partitions for the leader (moves prefer idle ones)."""
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.bootstrap = bootstrap
        self.settings = settings
        self.topic = topic
        self.partitions = partitions
        self.assignment_topic = assignment_topic
        self._template = metadata
        self._cb = Callbacks(on_assigned, on_revoked, on_lost or on_revoked, on_fenced)
        self._clock = clock
        assignor = get_assignor(settings.assignor)  # ConfigError early for a bad name
        self._io: Executor = executor or GroupExecutor(
            bootstrap,
            settings,
            partitions=partitions,
            assignment_topic=assignment_topic,
            metadata=metadata,
            assignor=assignor,
            publisher=publisher,
            clock=clock,
            busy=busy,
            security=security,
        )
        self._sm = Membership(settings)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closing = False
        # From pause()/resume() and release threads, for the member thread.
        self._controls: deque[Pause | Resume | Released] = deque()
        self._releases = Releases(self._cb.revoked, self._released)
        self._thread: threading.Thread | None = None
        # Snapshot for other threads (guarded by _lock).
        self._generation = -1
        self._assigned: tuple[int, ...] = ()
        self._holding = False
        self._member_id = ""
        self._leader_id = ""
        self._state = State.UNJOINED
        self._lease_until = float("-inf")
        self._fatal: str | None = None
        self._pause_reason: str | None = None
        self._graceful = False  # close() may keep the connection: the member drains first

    # ---- public API ------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("Member already started")
        self._thread = threading.Thread(
            target=self._run, name=f"ringleader-member-{self._template.worker_id}", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float | None = 60.0) -> None:
        """Revoke (on_revoked returns first), leave the group, stop the thread.

        Cooperative and stable: the member keeps heartbeating while its partitions drain,
        then leaves. Otherwise a request in flight (a JoinGroup the broker holds) is cut."""
        with self._lock:
            self._closing = True
            graceful = self._graceful
        self._wake.set()
        if not graceful:
            self._io.abort()
        if self._thread is None or self._thread is threading.current_thread():
            return
        if graceful:
            self._thread.join(None if timeout is None else max(0.0, timeout - 5.0))
            if not self._thread.is_alive():
                return
            self._io.abort()  # out of time: cut whatever the member waits for
        self._thread.join(timeout if not graceful else 5.0)

    def pause(self, reason: str) -> None:
        """Leave the group (on_revoked returns first) and stay out until `resume()`: for a
        worker that cannot serve partitions now. Before `start()`, the member never joins
        until resumed. Returns at once; the member thread does the leaving."""
        with self._lock:
            self._controls.append(Pause(self._clock(), reason))
        self._wake.set()

    def resume(self) -> None:
        """Rejoin the group after `pause()` (nothing happens when not paused)."""
        with self._lock:
            self._controls.append(Resume(self._clock()))
        self._wake.set()

    @property
    def paused(self) -> bool:
        """Out of the group (or leaving it) because of `pause()`."""
        with self._lock:
            return self._pause_reason is not None

    @property
    def generation(self) -> int:
        """Generation of the assignment currently applied (-1 when none)."""
        with self._lock:
            return self._generation if self._holding else -1

    @property
    def member_id(self) -> str:
        with self._lock:
            return self._member_id

    @property
    def rebalances(self) -> tuple[int, float | None]:
        """Rebalances so far (each applied generation ends one) and the last one's seconds."""
        return self._sm.rebalances, self._sm.last_rebalance

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return bool(self._member_id) and self._member_id == self._leader_id

    @property
    def assigned(self) -> tuple[int, ...]:
        """Partitions of the applied generation (empty when holding none)."""
        with self._lock:
            return self._assigned if self._holding else ()

    @property
    def coordinator(self) -> CoordinatorAddress | None:
        """The broker last found to coordinate the group (None before the first lookup)."""
        return self._io.coordinator

    @property
    def leader_id(self) -> str:
        with self._lock:
            return self._leader_id

    @property
    def lease_deadline(self) -> float:
        """Until when (on `clock`) the applied assignment is safe to act on: the self-fencing
        deadline. Past it the broker may have handed the partitions to someone else."""
        with self._lock:
            return self._lease_until if self._holding else float("-inf")

    def owns(self, partition: int) -> bool:
        """Whether a task of `partition` may be started now: the partition is in the applied
        assignment and the session lease has not lapsed. Check it before every task: it
        stays correct even when the member thread has been paused (SIGSTOP, GC, swap)."""
        now = self._clock()
        with self._lock:
            return self._holding and partition in self._assigned and now < self._lease_until

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    @property
    def fatal_error(self) -> str | None:
        """Why the member stopped for good (fenced static instance, fatal broker error)."""
        with self._lock:
            return self._fatal

    def wait_assigned(self, timeout: float) -> bool:
        """Block until a generation is applied (True) or `timeout` passes (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._holding, timeout)

    # ---- the member thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            # A bug must not leave the worker running partitions nobody heartbeats for.
            log.exception("member thread crashed; revoking")
            with self._lock:
                holding, parts = self._holding, self._assigned
            if holding:
                self._revoke(parts, "member thread crashed")
            raise
        finally:
            self._io.close()
            with self._changed:
                self._state = self._sm.state
                self._changed.notify_all()

    def _loop(self) -> None:
        queue: deque[Command] = deque(self._handle(Start(self._clock())))
        left = False
        while self._sm.state not in TERMINAL_STATES:
            if self._closing and not left:
                # Abandon pending requests (close cut the connection) but keep local commands:
                # a Revoke emitted just before close must still drain and commit the worker's
                # partitions before the LeaveGroup. Leave itself revokes what is still held.
                kept = [c for c in queue if isinstance(c, LocalCommand)]
                queue = deque(kept + self._handle(Leave(self._clock())))
                left = True
            elif (control := self._next_control(left)) is not None:
                if isinstance(control, Pause):
                    # Like close: a pending request is abandoned, local commands are kept.
                    log.warning("leaving the group until resumed: %s", control.reason)
                    queue = deque([c for c in queue if isinstance(c, LocalCommand)])
                elif isinstance(control, Resume):
                    log.warning("rejoining the group")
                queue.extend(self._handle(control))
            if queue:
                event = self._step(queue.popleft())
                if event is not None:
                    if self._closing and not left and not isinstance(event, LeaveResponse):
                        continue  # an aborted request's outcome no longer matters
                    queue.extend(self._handle(event))
                continue
            deadline = self._sm.next_deadline()
            now = self._clock()
            wait = _IDLE_WAIT if deadline is None else min(_IDLE_WAIT, max(0.0, deadline - now))
            if wait > 0 and self._wake.wait(wait):
                self._wake.clear()
            queue.extend(self._handle(Tick(self._clock())))

    def _next_control(self, left: bool) -> Pause | Resume | Released | None:
        """The next control to feed; once leaving, only releases still matter."""
        with self._lock:
            while self._controls:
                c = self._controls.popleft()
                if isinstance(c, Released):
                    self._releases.finished(c.partitions)
                    return c
                if not left:
                    return c
            return None

    def _handle(self, event: Event) -> list[Command]:
        cmds = self._sm.handle(event)
        with self._changed:
            self._pause_reason = self._sm.pause_reason
            self._member_id = self._sm.member_id
            self._leader_id = self._sm.leader_id
            self._state = self._sm.state
            self._lease_until = (
                self._sm.fence_deadline if self._sm.assigned is not None else float("-inf")
            )
            self._graceful = self._sm.keeps_partitions and self._sm.state == State.STABLE
            self._changed.notify_all()
        return cmds

    def _step(self, cmd: Command) -> Event | None:
        """Run one command: a local one here (no event), a request through the executor."""
        if isinstance(cmd, Assign):
            self._apply(cmd)
        elif isinstance(cmd, Revoke):
            if cmd.wait:
                self._revoke(cmd.partitions, cmd.reason, lost=cmd.lost)
            else:
                self._release(cmd.partitions, cmd.reason)
        elif isinstance(cmd, Fenced):
            self._fenced(cmd)
        else:
            return self._io.run(cmd)
        return None

    def _apply(self, cmd: Assign) -> None:
        with self._changed:
            self._generation = cmd.generation
            self._assigned = cmd.partitions
            self._holding = True
            self._changed.notify_all()
        self._io.applied(cmd.generation, cmd.partitions)
        log.info("generation %d applied: partitions %s", cmd.generation, list(cmd.partitions))
        self._cb.assigned(cmd.generation, list(cmd.partitions))

    def _revoke(self, partitions: Sequence[int], reason: str, *, lost: bool = False) -> None:
        """Let go of everything now: moves in progress finish first. `lost` (the session is
        gone or going): through `on_lost`, which must not wait for running work."""
        with self._changed:
            self._holding = False
            self._assigned = ()
            self._changed.notify_all()
        released = self._join_releases()
        rest = [p for p in partitions if p not in released]
        log.info("revoking %s: %s", rest, reason)
        if lost:
            self._cb.lost(rest)
        else:
            self._cb.revoked(rest)

    def _release(self, partitions: tuple[int, ...], reason: str) -> None:
        """A cooperative move: stop owning these now, drain them on a thread of their own."""
        with self._changed:
            self._assigned = tuple(p for p in self._assigned if p not in partitions)
            self._changed.notify_all()
        log.info("releasing %s: %s", list(partitions), reason)
        self._releases.start(partitions)

    def _released(self, partitions: tuple[int, ...]) -> None:
        # On the release thread: hand the news to the member thread.
        with self._lock:
            self._controls.append(Released(self._clock(), partitions))
        self._wake.set()

    def _join_releases(self) -> set[int]:
        """Wait for moves in progress; their Released events are dropped (the revoke that
        waited for them supersedes them: a late one must not clear a later move)."""
        done = self._releases.join_all()
        with self._lock:
            self._controls = deque(c for c in self._controls if not isinstance(c, Released))
        return done

    def _fenced(self, cmd: Fenced) -> None:
        log.warning("fenced (%s): %s", "fatal" if cmd.fatal else "will rejoin", cmd.reason)
        if cmd.fatal:
            with self._lock:
                self._fatal = cmd.reason
        self._cb.fenced(cmd.reason, cmd.fatal)
