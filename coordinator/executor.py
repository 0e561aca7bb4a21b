"""The network half of a `Member`: runs the membership machine's request commands.

`GroupExecutor.run(cmd)` carries out one `RequestCommand` (group requests through
`coordinator.wire`, the assignor and the 2PC commit on the leader, the read of the committed
assignment) and answers the event the machine expects; it never raises for an I/O failure
(that is a `RequestFailed`). Local commands (assign, revoke, fenced) are the `Member`'s own.
`Executor` is the seam: a test can hand `Member` a fake that answers with scripted events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from confluent_kafka import KafkaException

from ringleader.coordinator.assignment import (
    Assignment,
    AssignmentDecodeError,
    AssignmentLog,
    AssignmentPointer,
)
from ringleader.coordinator.assignors import Assignor
from ringleader.coordinator.errors import ErrorCode, RingleaderError
from ringleader.coordinator.groupapi import CoordinatorAddress
from ringleader.coordinator.leaderplan import LeaderPlanner
from ringleader.coordinator.messages import (
    AssignmentCommitted,
    AssignmentRead,
    CoordinatorFound,
    Event,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    LeaveResponse,
    ReadAssignment,
    Request,
    RequestCommand,
    RequestFailed,
    RunAssignment,
    SendHeartbeat,
    SendJoin,
    SendLeave,
    SendSync,
    SyncResponse,
)
from ringleader.coordinator.metadata import MemberMetadata, MetadataDecodeError
from ringleader.coordinator.settings import MemberSettings
from ringleader.coordinator.wire import GroupClient
from ringleader.errors import BrokerAuthError
from ringleader.security import KafkaSecurity

log = logging.getLogger("ringleader.coordinator.member")

# How the leader commits an assignment; the default is AssignmentLog.publish_assignment (2PC).
Publisher = Callable[[AssignmentLog, Assignment, float], AssignmentPointer]
# Busy partitions of this worker: partition -> seconds its oldest running task has run.
BusyReport = Callable[[], Mapping[int, int]]

_IO_ERRORS = (RingleaderError, KafkaException, OSError)


def publish_committed(log_: AssignmentLog, a: Assignment, timeout: float) -> AssignmentPointer:
    return log_.publish_assignment(a, timeout)


def no_busy() -> Mapping[int, int]:
    return {}


class Executor(Protocol):
    """What `Member` needs from its network half."""

    @property
    def coordinator(self) -> CoordinatorAddress | None: ...

    def run(self, cmd: RequestCommand) -> Event:
        """Carry out one request command; answer its outcome (never raise for I/O)."""
        ...

    def applied(self, generation: int, partitions: tuple[int, ...]) -> None:
        """A generation was applied: report it in the next JoinGroup metadata."""
        ...

    def abort(self) -> None:
        """From another thread: make a request in flight fail now (close has begun)."""
        ...

    def close(self) -> None: ...


class GroupExecutor:
    """Runs request commands against the broker and the assignment log."""

    def __init__(
        self,
        bootstrap: str,
        settings: MemberSettings,
        *,
        partitions: int,
        assignment_topic: str,
        metadata: MemberMetadata,
        assignor: Assignor,
        publisher: Publisher = publish_committed,
        clock: Callable[[], float] = time.monotonic,
        busy: BusyReport = no_busy,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.settings = settings
        self.partitions = partitions
        self.assignment_topic = assignment_topic
        self._template = metadata
        self._assignor = assignor
        self._publisher = publisher
        self._now = clock
        self._busy = busy
        self._planner = LeaderPlanner(assignor, settings, partitions)
        self._client = self._new_client()
        self._log: AssignmentLog | None = None
        # What the next JoinGroup metadata reports (the last generation applied).
        self._last_generation = -1
        self._last_partitions: tuple[int, ...] = ()
        self._log_offset = -1
        self._runners: dict[type[Any], Callable[[Any], Event]] = {
            FindCoordinator: self._find,
            SendJoin: self._join,
            RunAssignment: self._run_assignment,
            SendSync: self._sync,
            ReadAssignment: self._read_assignment,
            SendHeartbeat: self._heartbeat,
            SendLeave: self._leave,
        }

    @property
    def coordinator(self) -> CoordinatorAddress | None:
        return self._client.coordinator

    def run(self, cmd: RequestCommand) -> Event:
        return self._runners[type(cmd)](cmd)

    def applied(self, generation: int, partitions: tuple[int, ...]) -> None:
        self._last_generation = generation
        self._last_partitions = partitions

    def abort(self) -> None:
        # A JoinGroup/SyncGroup can be held by the broker for the rebalance timeout; cut it.
        self._client.abort()

    def close(self) -> None:
        self._client.close()
        if self._log is not None:
            self._log.close()

    def _failed(self, request: Request, e: BaseException) -> RequestFailed:
        # Refused credentials or TLS cannot get better by retrying: the machine stops for good.
        return RequestFailed(self._now(), request, str(e), fatal=isinstance(e, BrokerAuthError))

    # ---- one runner per request command --------------------------------------------------

    def _new_client(self) -> GroupClient:
        s = self.settings
        return GroupClient(
            self.bootstrap,
            s.group_id,
            client_id=s.client_id,
            connect_timeout=s.connect_timeout,
            security=self.security,
        )

    def _find(self, cmd: FindCoordinator) -> Event:
        try:
            found = self._client.find_coordinator(cmd.timeout)
            prompt = self._client.answers_syncs_promptly()
        except _IO_ERRORS as e:
            log.info("find coordinator failed: %s", e)
            return self._failed(Request.FIND, e)
        log.info("coordinator of %s is %s", self.settings.group_id, found)
        return CoordinatorFound(self._now(), prompt_sync=prompt)

    def _join(self, cmd: SendJoin) -> Event:
        s = self.settings
        owned = set(cmd.owned)
        busy = tuple((p, age) for p, age in sorted(self._busy().items()) if p in owned)
        meta = replace(
            self._template,
            held_generation=self._last_generation,
            held=self._last_partitions,
            log_offset=self._log_offset,
            protocol=s.rebalance_protocol,
            owned=cmd.owned,
            busy=busy,
            instance_id=s.group_instance_id,
            leaving=cmd.leaving,
        ).encode()
        sent = self._now()
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
            return self._failed(Request.JOIN, e)
        if r.error == ErrorCode.NONE:
            log.info(
                "joined generation %d as %s (leader %s, %d members)",
                r.generation,
                r.member_id,
                r.leader,
                len(r.members),
            )
        members = {m.member_id: m.metadata for m in r.members}
        return JoinResponse(
            self._now(),
            sent,
            r.error,
            r.generation,
            r.member_id,
            r.leader,
            r.protocol_name,
            members,
        )

    def _sync(self, cmd: SendSync) -> Event:
        sent = self._now()
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
            log.info("sync failed: %s", e)
            return self._failed(Request.SYNC, e)
        if res.error != ErrorCode.NONE:
            log.info("sync of generation %d answered %s", cmd.generation, res.error.name)
        return SyncResponse(self._now(), sent, res.error, res.assignment)

    def _heartbeat(self, cmd: SendHeartbeat) -> Event:
        sent = self._now()
        try:
            code = self._client.heartbeat(
                generation=cmd.generation,
                member_id=cmd.member_id,
                group_instance_id=cmd.group_instance_id,
                timeout=cmd.timeout,
            )
        except _IO_ERRORS as e:
            log.info("heartbeat failed: %s", e)
            return self._failed(Request.HEARTBEAT, e)
        if code != ErrorCode.NONE:
            log.info("heartbeat answered %s", code.name)
        return HeartbeatResponse(self._now(), sent, code)

    def _assignment_log(self) -> AssignmentLog:
        if self._log is None:
            self._log = AssignmentLog(self.bootstrap, self.assignment_topic, security=self.security)
        return self._log

    def _run_assignment(self, cmd: RunAssignment) -> Event:
        decoded: dict[str, MemberMetadata] = {}
        for mid, blob in cmd.members.items():
            try:
                decoded[mid] = MemberMetadata.decode(blob)
            except MetadataDecodeError as e:
                log.warning("member %s sent undecodable metadata (%s); it gets nothing", mid, e)
        try:
            decision = self._planner.decide(
                cmd.generation, cmd.leader_id, cmd.members, decoded, self._now()
            )
            pointer = self._publisher(
                self._assignment_log(), decision.assignment, self.settings.request_timeout
            )
        except (*_IO_ERRORS, ValueError) as e:
            log.warning("generation %d: assignment not committed: %s", cmd.generation, e)
            return self._failed(Request.ASSIGN, e)
        a = decision.assignment
        log.info(
            "generation %d (%s) committed at offset %d: %s; to move: %s",
            cmd.generation,
            a.protocol,
            pointer.commit_offset,
            {m: len(p) for m, p in a.owners.items()},
            a.revoking or "none",
        )
        return AssignmentCommitted(self._now(), cmd.generation, pointer.encode(), decision.followup)

    def _read_assignment(self, cmd: ReadAssignment) -> Event:
        try:
            pointer = AssignmentPointer.decode(cmd.blob)
        except AssignmentDecodeError as e:
            log.warning("generation %d: bad pointer from the leader: %s", cmd.generation, e)
            return AssignmentRead(self._now(), cmd.generation, None)
        if pointer.generation != cmd.generation:
            log.warning(
                "pointer names generation %d, joined %d", pointer.generation, cmd.generation
            )
            return AssignmentRead(self._now(), cmd.generation, None)
        alog = self._assignment_log()
        try:
            assignment = alog.read(pointer, self.settings.request_timeout)
        except _IO_ERRORS as e:
            return self._failed(Request.READ, e)
        if assignment is None:
            log.warning("generation %d not applied: %s", cmd.generation, alog.last_reason)
            return AssignmentRead(self._now(), cmd.generation, None)
        # Reported in the next JoinGroup metadata; a change there also makes Kafka rebalance
        # a static member it would otherwise hand the old member's assignment again.
        self._log_offset = max(self._log_offset, pointer.commit_offset)
        self._planner.read(assignment)
        if cmd.member_id not in assignment.owners:
            # A static member that restarted got a new member id, but the broker returned
            # the generation the leader assigned to the old id: rejoin for a fresh one.
            log.warning(
                "generation %d has no part for %s; rejoining", cmd.generation, cmd.member_id
            )
            return AssignmentRead(self._now(), cmd.generation, None)
        mine = tuple(sorted(assignment.partitions_of(cmd.member_id)))
        moving = bool(assignment.revoking)
        return AssignmentRead(self._now(), cmd.generation, mine, assignment.protocol, moving)

    def _leave(self, cmd: SendLeave) -> Event:
        # The main connection may have been cut by abort(); leave on a fresh one.
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
            return self._failed(Request.LEAVE, e)
        finally:
            client.close()
        return LeaveResponse(self._now(), code)
