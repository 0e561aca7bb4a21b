"""`Member`: what a worker embeds to take part in the group.

A background thread drives the pure `Membership` machine: it runs each command with
`coordinator.wire` (group requests), the assignor and `AssignmentLog` (2PC commit and read),
and the worker's callbacks, and feeds the outcomes back as events. Heartbeats are sent by
this thread, so they continue while the worker's own threads run tasks.

Callback contract:
* ``on_assigned(generation, partitions)`` runs on the member thread once the generation's
  assignment is committed and consistent; it should return quickly (heartbeats wait for it).
* ``on_revoked(partitions)`` runs, and returns, before the member rejoins the group, before it
  leaves, and when it fences itself after its session lapsed: so before any other member can
  be given those partitions. It may block to finish or abandon in-flight work, but must
  return well within the rebalance timeout (and within ``fence_margin_ms`` when fencing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from confluent_kafka import KafkaException

from ringleader.coordinator.assignment import (
    AssignmentDecodeError,
    AssignmentLog,
    AssignmentPointer,
)
from ringleader.coordinator.assignors import get_assignor
from ringleader.coordinator.errors import (
    BrokerUnavailableError,
    ErrorCode,
    FencedError,
    RingleaderError,
)
from ringleader.coordinator.membership import (
    Assign,
    AssignmentCommitted,
    AssignmentRead,
    Command,
    CoordinatorFound,
    Event,
    Fenced,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    Leave,
    LeaveResponse,
    Membership,
    ReadAssignment,
    Request,
    RequestFailed,
    Revoke,
    RunAssignment,
    SendHeartbeat,
    SendJoin,
    SendLeave,
    SendSync,
    Start,
    State,
    SyncResponse,
    Tick,
)
from ringleader.coordinator.metadata import MemberMetadata, MetadataDecodeError
from ringleader.coordinator.settings import MemberSettings
from ringleader.coordinator.wire import CoordinatorAddress, GroupClient

log = logging.getLogger("ringleader.coordinator.member")

AssignedCallback = Callable[[int, list[int]], None]
RevokedCallback = Callable[[list[int]], None]
FencedCallback = Callable[[str, bool], None]
# How the leader commits an assignment; the default is AssignmentLog.publish (2PC).
Publisher = Callable[[AssignmentLog, int, str, Mapping[str, list[int]], float], AssignmentPointer]

_IO_ERRORS = (RingleaderError, KafkaException, OSError)
_IDLE_WAIT = 1.0


def publish_committed(
    log_: AssignmentLog,
    generation: int,
    leader_id: str,
    owners: Mapping[str, list[int]],
    timeout: float,
) -> AssignmentPointer:
    return log_.publish(generation, leader_id, owners, timeout)


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
        publisher: Publisher = publish_committed,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.bootstrap = bootstrap
        self.settings = settings
        self.topic = topic
        self.partitions = partitions
        self.assignment_topic = assignment_topic
        self._template = metadata
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_fenced = on_fenced
        self._publisher = publisher
        self._clock = clock
        self._assignor = get_assignor(settings.assignor)  # ConfigError early for a bad name
        self._sm = Membership(settings)
        self._client = self._new_client()
        self._commit_client: GroupClient | None = None
        self._log: AssignmentLog | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closing = False
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
        self._crash: BaseException | None = None
        # What the next JoinGroup metadata reports (the last generation applied).
        self._last_generation = -1
        self._last_partitions: tuple[int, ...] = ()
        self._log_offset = -1

    # ---- public API ------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("Member already started")
        self._thread = threading.Thread(
            target=self._run, name=f"ringleader-member-{self._template.worker_id}", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float | None = 60.0) -> None:
        """Revoke (on_revoked returns first), leave the group, stop the thread."""
        with self._lock:
            self._closing = True
        self._wake.set()
        # A JoinGroup/SyncGroup can be held by the broker for the rebalance timeout; cut it.
        self._client.abort()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

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
        return self._client.coordinator

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

    def commit_offsets(self, offsets: Mapping[int, int], timeout: float) -> dict[int, ErrorCode]:
        """OffsetCommit for partitions this member holds, fenced by its generation and id.

        Raises FencedError if the member does not hold all of them right now. The broker may
        still refuse (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION): see each partition's code.
        """
        with self._lock:
            holding = set(self._assigned) if self._holding else set()
            generation, member_id = self._generation, self._member_id
        missing = sorted(set(offsets) - holding)
        if missing:
            raise FencedError(f"not holding partitions {missing} (generation {generation})")
        if self._commit_client is None:
            self._commit_client = self._new_client()
        client = self._commit_client
        if client.coordinator is None:
            client.find_coordinator(timeout)
        try:
            return client.commit_offsets(
                generation=generation,
                member_id=member_id,
                group_instance_id=self.settings.group_instance_id,
                topic=self.topic,
                offsets=offsets,
                timeout=timeout,
            )
        except BrokerUnavailableError:
            client.coordinator = None
            raise

    # ---- the member thread -----------------------------------------------------------

    def _new_client(self) -> GroupClient:
        s = self.settings
        return GroupClient(
            self.bootstrap,
            s.group_id,
            client_id=s.client_id,
            connect_timeout=s.connect_timeout,
        )

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:
            # A bug must not leave the worker running partitions nobody heartbeats for.
            log.exception("member thread crashed; revoking")
            with self._lock:
                self._crash = e
                holding, parts = self._holding, self._assigned
            if holding:
                self._revoke(parts, "member thread crashed")
            raise
        finally:
            self._client.close()
            if self._commit_client is not None:
                self._commit_client.close()
            if self._log is not None:
                self._log.close()
            with self._changed:
                self._state = self._sm.state
                self._changed.notify_all()

    def _loop(self) -> None:
        queue: deque[Command] = deque(self._handle(Start(self._clock())))
        left = False
        while self._sm.state not in (State.CLOSED, State.FENCED):
            if self._closing and not left:
                queue.clear()  # abandon whatever was pending; Leave revokes first
                queue.extend(self._handle(Leave(self._clock())))
                left = True
            if queue:
                cmd = queue.popleft()
                event = self._execute(cmd)
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

    def _handle(self, event: Event) -> list[Command]:
        cmds = self._sm.handle(event)
        with self._changed:
            self._member_id = self._sm.member_id
            self._leader_id = self._sm.leader_id
            self._state = self._sm.state
            self._lease_until = (
                self._sm.fence_deadline if self._sm.assigned is not None else float("-inf")
            )
            self._changed.notify_all()
        return cmds

    def _execute(self, cmd: Command) -> Event | None:
        now = self._clock
        s = self.settings
        if isinstance(cmd, FindCoordinator):
            try:
                found = self._client.find_coordinator(cmd.timeout)
            except _IO_ERRORS as e:
                log.info("find coordinator failed: %s", e)
                return RequestFailed(now(), Request.FIND, str(e))
            log.info("coordinator of %s is %s", s.group_id, found)
            return CoordinatorFound(now())
        if isinstance(cmd, SendJoin):
            meta = replace(
                self._template,
                held_generation=self._last_generation,
                held=self._last_partitions,
                log_offset=self._log_offset,
            ).encode()
            sent = now()
            try:
                r = self._client.join_group(
                    member_id=cmd.member_id,
                    group_instance_id=cmd.group_instance_id,
                    session_timeout_ms=s.session_timeout_ms,
                    rebalance_timeout_ms=s.rebalance_timeout_ms,
                    protocols=[(cmd.protocol_name, meta)],
                    timeout=cmd.timeout,
                    reason=cmd.reason[:200],
                )
            except _IO_ERRORS as e:
                return RequestFailed(now(), Request.JOIN, str(e))
            if r.error == ErrorCode.NONE:
                log.info(
                    "joined generation %d as %s (leader %s, %d members)",
                    r.generation,
                    r.member_id,
                    r.leader,
                    len(r.members),
                )
            return JoinResponse(
                now(),
                sent,
                r.error,
                r.generation,
                r.member_id,
                r.leader,
                r.protocol_name,
                {m.member_id: m.metadata for m in r.members},
            )
        if isinstance(cmd, RunAssignment):
            return self._run_assignment(cmd)
        if isinstance(cmd, SendSync):
            sent = now()
            try:
                res = self._client.sync_group(
                    generation=cmd.generation,
                    member_id=cmd.member_id,
                    group_instance_id=cmd.group_instance_id,
                    protocol_name=cmd.protocol_name,
                    assignments=cmd.assignments,
                    timeout=cmd.timeout,
                )
            except _IO_ERRORS as e:
                return RequestFailed(now(), Request.SYNC, str(e))
            return SyncResponse(now(), sent, res.error, res.assignment)
        if isinstance(cmd, ReadAssignment):
            return self._read_assignment(cmd)
        if isinstance(cmd, SendHeartbeat):
            sent = now()
            try:
                code = self._client.heartbeat(
                    generation=cmd.generation,
                    member_id=cmd.member_id,
                    group_instance_id=cmd.group_instance_id,
                    timeout=cmd.timeout,
                )
            except _IO_ERRORS as e:
                log.info("heartbeat failed: %s", e)
                return RequestFailed(now(), Request.HEARTBEAT, str(e))
            if code != ErrorCode.NONE:
                log.info("heartbeat answered %s", code.name)
            return HeartbeatResponse(now(), sent, code)
        if isinstance(cmd, SendLeave):
            return self._leave(cmd)
        if isinstance(cmd, Assign):
            self._apply(cmd)
            return None
        if isinstance(cmd, Revoke):
            self._revoke(cmd.partitions, cmd.reason)
            return None
        if isinstance(cmd, Fenced):
            self._fenced(cmd)
            return None
        raise TypeError(f"unknown command {cmd!r}")  # pragma: no cover

    def _assignment_log(self) -> AssignmentLog:
        if self._log is None:
            self._log = AssignmentLog(self.bootstrap, self.assignment_topic)
        return self._log

    def _run_assignment(self, cmd: RunAssignment) -> Event:
        now = self._clock
        decoded: dict[str, MemberMetadata] = {}
        for mid, blob in cmd.members.items():
            try:
                decoded[mid] = MemberMetadata.decode(blob)
            except MetadataDecodeError as e:
                log.warning("member %s sent undecodable metadata (%s); it gets nothing", mid, e)
        try:
            owners = self._assignor.assign(decoded, list(range(self.partitions)))
            full = {mid: sorted(owners.get(mid, [])) for mid in cmd.members}
            pointer = self._publisher(
                self._assignment_log(),
                cmd.generation,
                cmd.leader_id,
                full,
                self.settings.request_timeout,
            )
        except (*_IO_ERRORS, ValueError) as e:
            log.warning("generation %d: assignment not committed: %s", cmd.generation, e)
            return RequestFailed(now(), Request.ASSIGN, str(e))
        log.info(
            "generation %d committed at offset %d: %s",
            cmd.generation,
            pointer.commit_offset,
            {m: len(p) for m, p in full.items()},
        )
        return AssignmentCommitted(now(), cmd.generation, pointer.encode())

    def _read_assignment(self, cmd: ReadAssignment) -> Event:
        now = self._clock
        try:
            pointer = AssignmentPointer.decode(cmd.blob)
        except AssignmentDecodeError as e:
            log.warning("generation %d: bad pointer from the leader: %s", cmd.generation, e)
            return AssignmentRead(now(), cmd.generation, None)
        if pointer.generation != cmd.generation:
            log.warning(
                "pointer names generation %d, joined %d", pointer.generation, cmd.generation
            )
            return AssignmentRead(now(), cmd.generation, None)
        alog = self._assignment_log()
        try:
            assignment = alog.read(pointer, self.settings.request_timeout)
        except _IO_ERRORS as e:
            return RequestFailed(now(), Request.READ, str(e))
        if assignment is None:
            log.warning("generation %d not applied: %s", cmd.generation, alog.last_reason)
            return AssignmentRead(now(), cmd.generation, None)
        # Reported in the next JoinGroup metadata; a change there also makes Kafka rebalance
        # a static member it would otherwise hand the old member's assignment again.
        self._log_offset = max(self._log_offset, pointer.commit_offset)
        member_id = self._sm.member_id
        if member_id not in assignment.owners:
            # A static member that restarted got a new member id, but the broker returned
            # the generation the leader assigned to the old id: rejoin for a fresh one.
            log.warning("generation %d has no part for %s; rejoining", cmd.generation, member_id)
            return AssignmentRead(now(), cmd.generation, None)
        mine = tuple(sorted(assignment.partitions_of(member_id)))
        return AssignmentRead(now(), cmd.generation, mine)

    def _leave(self, cmd: SendLeave) -> Event:
        now = self._clock
        # The main connection may have been cut by close(); leave on a fresh one.
        client = self._new_client()
        try:
            client.find_coordinator(self.settings.request_timeout)
            code = client.leave_group(
                member_id=cmd.member_id,
                group_instance_id=cmd.group_instance_id,
                timeout=cmd.timeout,
            )
        except _IO_ERRORS as e:
            log.info("leave failed: %s", e)
            return RequestFailed(now(), Request.LEAVE, str(e))
        finally:
            client.close()
        return LeaveResponse(now(), code)

    def _apply(self, cmd: Assign) -> None:
        with self._changed:
            self._generation = cmd.generation
            self._assigned = cmd.partitions
            self._holding = True
            self._changed.notify_all()
        self._last_generation = cmd.generation
        self._last_partitions = cmd.partitions
        log.info("generation %d applied: partitions %s", cmd.generation, list(cmd.partitions))
        try:
            self._on_assigned(cmd.generation, list(cmd.partitions))
        except Exception:
            log.exception("on_assigned raised")

    def _revoke(self, partitions: Sequence[int], reason: str) -> None:
        with self._changed:
            self._holding = False
            self._assigned = ()
            self._changed.notify_all()
        log.info("revoking %s: %s", list(partitions), reason)
        try:
            self._on_revoked(list(partitions))
        except Exception:
            log.exception("on_revoked raised")

    def _fenced(self, cmd: Fenced) -> None:
        log.warning("fenced (%s): %s", "fatal" if cmd.fatal else "will rejoin", cmd.reason)
        if cmd.fatal:
            with self._lock:
                self._fatal = cmd.reason
        if self._on_fenced is not None:
            try:
                self._on_fenced(cmd.reason, cmd.fatal)
            except Exception:
                log.exception("on_fenced raised")
