"""Group membership as a pure state machine (h11 style).

No sockets and no clocks: every event carries `now` (seconds on any monotonic clock), and
`Membership.handle(event)` returns the commands (`coordinator.messages`) the I/O layer
(`coordinator.member`) must run, in order, feeding their outcomes back as events.

Safety rules this machine enforces:

* Eager revoke-before-rejoin: whenever the member leaves a generation it holds partitions
  of, a `Revoke` comes before the `SendJoin` (or `FindCoordinator`) in the same command list.
* Self-fencing: a member holding partitions revokes them once `last successful contact +
  session timeout - fence margin` has passed. Brokers do not reliably tell a paused member
  (a stale heartbeat may get REBALANCE_IN_PROGRESS, a resumed zombie learns UNKNOWN_MEMBER_ID
  only on its next heartbeat), so the member must notice on its own clock. "Last contact"
  is when the last successful request was *sent*: the broker saw it no earlier than that.
* An assignment is applied only after the committed assignment was read (AssignmentRead with
  partitions) while the session is still safe.
"""

from __future__ import annotations

from collections.abc import Mapping

from ringleader.coordinator.errors import COORDINATOR_MOVED, ErrorCode, RingleaderError
from ringleader.coordinator.messages import (
    FATAL_ERRORS,
    TERMINAL_STATES,
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
from ringleader.coordinator.settings import MemberSettings


class MembershipProtocolError(RingleaderError):
    """The I/O layer fed an event the machine cannot be in a position to receive."""


_MIN_REQUEST_TIMEOUT = 0.05


class Membership:
    """The membership of one member in one group."""

    def __init__(self, settings: MemberSettings) -> None:
        self.settings = settings
        self.state = State.UNJOINED
        self.member_id = ""
        self.generation = -1
        self.leader_id = ""
        self.protocol_name: str | None = None
        self.assigned: tuple[int, ...] | None = None  # None: holds nothing
        self._members: Mapping[str, bytes] = {}
        self._coordinator_known = False
        self._inflight: Request | None = None
        self._wake_at = 0.0  # backoff: no new request before this
        self._last_contact = float("-inf")  # sent_at of the last successful request
        self._next_heartbeat = float("inf")
        self._rejoin_reason = "start"

    # ---- queries ---------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return bool(self.member_id) and self.member_id == self.leader_id

    @property
    def coordinator_known(self) -> bool:
        return self._coordinator_known

    @property
    def inflight(self) -> Request | None:
        return self._inflight

    @property
    def fence_deadline(self) -> float:
        """When a member holding partitions revokes them if no heartbeat succeeded."""
        s = self.settings
        return self._last_contact + s.session_timeout - s.fence_margin

    def next_deadline(self) -> float | None:
        """When the I/O layer must feed a Tick at the latest (None: only on the next event)."""
        if self.state in TERMINAL_STATES:
            return None
        times: list[float] = []
        if self.assigned is not None:
            times.append(self.fence_deadline)
        if self._inflight is None:
            if self.state == State.STABLE and self._coordinator_known:
                times.append(max(self._wake_at, self._next_heartbeat))
            elif self.state in (State.STABLE, State.FINDING_COORDINATOR, State.JOINING):
                times.append(self._wake_at)
        return min(times) if times else None

    # ---- the one entry point -------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; return the commands to run, in order."""
        out: list[Command] = []
        if self.state in TERMINAL_STATES:
            return out
        if isinstance(event, Start):
            self._start(event, out)
        elif isinstance(event, Leave):
            self._leave(event, out)
        elif isinstance(event, Tick):
            pass
        else:
            self._response(event, out)
        self._check_fence(event.now, out)
        self._drive(event.now, out)
        return out

    # ---- transitions ---------------------------------------------------------------------

    def _start(self, ev: Start, out: list[Command]) -> None:
        if self.state != State.UNJOINED:
            raise MembershipProtocolError(f"Start in state {self.state.name}")
        self.state = State.FINDING_COORDINATOR
        self._wake_at = ev.now

    def _leave(self, ev: Leave, out: list[Command]) -> None:
        self._inflight = None  # the I/O layer abandoned whatever was in flight
        self._revoke(out, "leave")
        s = self.settings
        # Static members do not leave: the broker keeps their place for the session timeout
        # so a restart under the same instance id causes no rebalance (as Kafka clients do).
        if self.member_id and self._coordinator_known and s.group_instance_id is None:
            self.state = State.LEAVING
            self._inflight = Request.LEAVE
            out.append(SendLeave(self.member_id, None, s.request_timeout))
        else:
            self.state = State.CLOSED

    def _expect(self, kind: Request, ev: object) -> None:
        if self._inflight != kind:
            raise MembershipProtocolError(
                f"{type(ev).__name__} while {self._inflight and self._inflight.name} "
                f"is in flight (state {self.state.name})"
            )
        self._inflight = None

    def _response(self, ev: Event, out: list[Command]) -> None:
        if isinstance(ev, CoordinatorFound):
            self._expect(Request.FIND, ev)
            self._coordinator_known = True
            if self.state == State.FINDING_COORDINATOR:
                self.state = State.JOINING
            elif self.state == State.STABLE:
                self._next_heartbeat = ev.now  # tell the new coordinator we are alive now
        elif isinstance(ev, JoinResponse):
            self._expect(Request.JOIN, ev)
            self._on_join(ev, out)
        elif isinstance(ev, AssignmentCommitted):
            self._expect(Request.ASSIGN, ev)
            if ev.generation != self.generation:
                raise MembershipProtocolError(
                    f"assignment of generation {ev.generation} committed, in {self.generation}"
                )
            self.state = State.AWAITING_SYNC
            self._inflight = Request.SYNC
            out.append(self._sync({m: ev.blob for m in self._members}))
        elif isinstance(ev, SyncResponse):
            self._expect(Request.SYNC, ev)
            self._on_sync(ev, out)
        elif isinstance(ev, AssignmentRead):
            self._expect(Request.READ, ev)
            self._on_read(ev, out)
        elif isinstance(ev, HeartbeatResponse):
            self._expect(Request.HEARTBEAT, ev)
            self._on_heartbeat(ev, out)
        elif isinstance(ev, LeaveResponse):
            self._expect(Request.LEAVE, ev)
            self.state = State.CLOSED
        elif isinstance(ev, RequestFailed):
            self._expect(ev.request, ev)
            self._on_failed(ev, out)
        else:  # pragma: no cover - Event is a closed union
            raise MembershipProtocolError(f"unknown event {ev!r}")

    def _on_join(self, ev: JoinResponse, out: list[Command]) -> None:
        err = ev.error
        if err == ErrorCode.NONE:
            self.member_id = ev.member_id
            self.generation = ev.generation
            self.leader_id = ev.leader
            self.protocol_name = ev.protocol_name
            self._last_contact = ev.sent_at
            if self.is_leader:
                self._members = dict(ev.members)
                if self.member_id not in self._members:
                    raise MembershipProtocolError("leader's JoinResponse does not list the leader")
                self.state = State.ASSIGNING
                self._inflight = Request.ASSIGN
                out.append(RunAssignment(ev.generation, self.member_id, self._members))
            else:
                self._members = {}
                self.state = State.AWAITING_SYNC
                self._inflight = Request.SYNC
                out.append(self._sync({}))
        elif err == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = ev.member_id
            self._rejoin(out, ev.now, "member id assigned", backoff=False)
        elif err == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
            self._rejoin(out, ev.now, "unknown member id", backoff=False)
        elif err in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            self._rejoin(out, ev.now, err.name.lower(), backoff=False)
        else:
            self._on_common_error(err, ev.now, out, "JoinGroup")

    def _on_sync(self, ev: SyncResponse, out: list[Command]) -> None:
        err = ev.error
        if err == ErrorCode.NONE:
            if not ev.assignment:
                self._rejoin(out, ev.now, "empty assignment from leader", backoff=True)
                return
            self._last_contact = max(self._last_contact, ev.sent_at)
            self.state = State.READING_ASSIGNMENT
            self._inflight = Request.READ
            out.append(ReadAssignment(self.generation, self.member_id, ev.assignment))
        elif err == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
            self._rejoin(out, ev.now, "unknown member id", backoff=False)
        elif err in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            self._rejoin(out, ev.now, err.name.lower(), backoff=False)
        else:
            self._on_common_error(err, ev.now, out, "SyncGroup")

    def _on_read(self, ev: AssignmentRead, out: list[Command]) -> None:
        if ev.generation != self.generation:
            raise MembershipProtocolError(
                f"read assignment of generation {ev.generation}, joined {self.generation}"
            )
        if ev.partitions is None:
            self._rejoin(out, ev.now, "assignment missing or inconsistent", backoff=True)
            return
        if ev.now >= self.fence_deadline:
            # Reading took so long the broker may already have moved on: never claim it.
            self._rejoin(out, ev.now, "session lapsed while reading the assignment", backoff=False)
            return
        self.state = State.STABLE
        self.assigned = tuple(ev.partitions)
        self._next_heartbeat = self._last_contact + self.settings.heartbeat_interval
        out.append(Assign(self.generation, self.assigned))

    def _on_heartbeat(self, ev: HeartbeatResponse, out: list[Command]) -> None:
        err = ev.error
        s = self.settings
        if self.state != State.STABLE:
            return  # the member fenced itself while this heartbeat was in flight
        if err == ErrorCode.NONE:
            self._last_contact = max(self._last_contact, ev.sent_at)
            self._next_heartbeat = ev.sent_at + s.heartbeat_interval
        elif err == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
            self._rejoin(out, ev.now, "unknown member id", backoff=False)
        elif err in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            self._rejoin(out, ev.now, err.name.lower(), backoff=False)
        elif err in COORDINATOR_MOVED:
            # Keep the partitions: the session may still be alive at the new coordinator.
            # The fence deadline guards the case where it is not.
            self._coordinator_known = False
            self._wake_at = ev.now + s.retry_backoff
        elif err in FATAL_ERRORS:
            self._fatal(out, f"Heartbeat: {err.name}")
        else:
            self._next_heartbeat = ev.now + s.retry_backoff

    def _on_failed(self, ev: RequestFailed, out: list[Command]) -> None:
        s = self.settings
        kind = ev.request
        reason = f"{kind.value} failed: {ev.reason}" if ev.reason else f"{kind.value} failed"
        if kind == Request.FIND:
            self._wake_at = ev.now + s.retry_backoff
        elif kind == Request.HEARTBEAT:
            self._coordinator_known = False
            self._wake_at = ev.now + s.retry_backoff
        elif kind in (Request.JOIN, Request.SYNC):
            self._coordinator_known = False
            self._rejoin(out, ev.now, reason, backoff=True)
        elif kind in (Request.ASSIGN, Request.READ):
            self._rejoin(out, ev.now, reason, backoff=True)
        elif kind == Request.LEAVE:
            self.state = State.CLOSED

    def _on_common_error(self, err: ErrorCode, now: float, out: list[Command], api: str) -> None:
        if err in COORDINATOR_MOVED:
            self._coordinator_known = False
            self._rejoin(out, now, f"{api}: {err.name}", backoff=True)
        elif err in FATAL_ERRORS:
            self._fatal(out, f"{api}: {err.name}")
        else:
            self._rejoin(out, now, f"{api}: {err.name}", backoff=True)

    # ---- helpers ---------------------------------------------------------------------

    def _sync(self, assignments: Mapping[str, bytes]) -> SendSync:
        s = self.settings
        return SendSync(
            generation=self.generation,
            member_id=self.member_id,
            group_instance_id=s.group_instance_id,
            protocol_name=self.protocol_name,
            assignments=assignments,
            timeout=self._join_timeout(),
        )

    def _join_timeout(self) -> float:
        # The coordinator holds JoinGroup/SyncGroup up to the rebalance timeout.
        s = self.settings
        return s.rebalance_timeout + s.request_timeout

    def _revoke(self, out: list[Command], reason: str) -> None:
        if self.assigned is not None:
            out.append(Revoke(self.assigned, reason))
            self.assigned = None

    def _rejoin(self, out: list[Command], now: float, reason: str, *, backoff: bool) -> None:
        """Leave the current generation (revoking first) and join again."""
        self._revoke(out, reason)
        self._rejoin_reason = reason
        self._next_heartbeat = float("inf")
        self._wake_at = now + self.settings.retry_backoff if backoff else now
        self.state = State.JOINING if self._coordinator_known else State.FINDING_COORDINATOR

    def _fatal(self, out: list[Command], reason: str) -> None:
        self._revoke(out, reason)
        self.state = State.FENCED
        out.append(Fenced(reason, fatal=True))

    def _check_fence(self, now: float, out: list[Command]) -> None:
        if self.assigned is None or now < self.fence_deadline:
            return
        reason = "session lapsed without a successful heartbeat"
        self._rejoin(out, now, reason, backoff=False)
        out.append(Fenced(reason, fatal=False))
        # An in-flight heartbeat cannot rescue the session any more; its answer is awaited
        # (the I/O layer bounds it by the fence deadline) and then the member rejoins.

    def _drive(self, now: float, out: list[Command]) -> None:
        """Start the next request if none is in flight and its time has come."""
        if self._inflight is not None or self.state in TERMINAL_STATES or now < self._wake_at:
            return
        s = self.settings
        if self.state in (State.FINDING_COORDINATOR, State.JOINING, State.STABLE) and (
            not self._coordinator_known
        ):
            if self.state == State.JOINING:
                self.state = State.FINDING_COORDINATOR
            self._inflight = Request.FIND
            out.append(FindCoordinator(s.request_timeout))
        elif self.state == State.JOINING:
            self._inflight = Request.JOIN
            out.append(
                SendJoin(
                    member_id=self.member_id,
                    group_instance_id=s.group_instance_id,
                    protocol_name=s.assignor,
                    reason=self._rejoin_reason,
                    timeout=self._join_timeout(),
                )
            )
        elif self.state == State.STABLE and now >= self._next_heartbeat:
            self._inflight = Request.HEARTBEAT
            timeout = s.request_timeout
            if self.assigned is not None:
                timeout = min(timeout, max(_MIN_REQUEST_TIMEOUT, self.fence_deadline - now))
            out.append(SendHeartbeat(self.generation, self.member_id, s.group_instance_id, timeout))
