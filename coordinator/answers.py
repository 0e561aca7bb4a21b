"""The membership machine's state and how it takes the answers to its requests.

`coordinator.membership.Membership` is the machine (its one entry point, the controls start,
leave, pause and resume, self-fencing and the choice of the next request); this base holds
the state they share and the reactions to each response (join, sync, assignment read,
heartbeat, leave, a failed request), so each module stays one concern under 400 lines.
"""

from __future__ import annotations

from collections.abc import Mapping

from ringleader.coordinator.errors import COORDINATOR_MOVED, ErrorCode, RingleaderError
from ringleader.coordinator.messages import (
    FATAL_ERRORS,
    Assign,
    AssignmentCommitted,
    AssignmentRead,
    Command,
    CoordinatorFound,
    Event,
    Fenced,
    HeartbeatResponse,
    JoinResponse,
    LeaveResponse,
    ReadAssignment,
    Request,
    RequestFailed,
    Revoke,
    RunAssignment,
    SendHeartbeat,
    SendSync,
    State,
    SyncResponse,
)
from ringleader.coordinator.settings import MemberSettings

# The follow-up rejoin of a move waits this long after the generation was applied: Tansu
# answers followers' SyncGroups on a ~1 s tick and fails every pending one (after 5 s) when a
# JoinGroup arrives before it (measured: rejoin at 0 s or 0.5 s fails them, at 1.2 s not).
FOLLOWUP_SETTLE = 1.5
# On a coordinator that answers followers' SyncGroups at once (CoordinatorFound.prompt_sync),
# only long enough for their requests to be on the wire.
PROMPT_SETTLE = 0.05
# While a move is under way the others learn of its follow-up rebalance from a heartbeat:
# beat this often for this long after applying such a generation, so that they rejoin at
# once rather than up to a whole heartbeat interval later.
MOVING_HEARTBEAT = 0.1
MOVING_WINDOW = 5.0
_MIN_REQUEST_TIMEOUT = 0.05


class MembershipProtocolError(RingleaderError):
    """The I/O layer fed an event the machine cannot be in a position to receive."""


class MembershipCore:
    """State of one member in one group, and its reactions to request answers."""

    def __init__(self, settings: MemberSettings) -> None:
        self.settings = settings
        self.state = State.UNJOINED
        self.member_id = ""
        self.generation = -1
        self.leader_id = ""
        self.protocol_name: str | None = None
        self.assigned: tuple[int, ...] | None = None  # None: holds nothing
        # Cooperative: partitions revoked with Revoke(wait=False), not yet Released; still
        # owned (claimed in JoinGroup), never started from.
        self.releasing: frozenset[int] = frozenset()
        self.generation_protocol = "eager"  # what the applied generation runs
        self._rejoin_when_released = False  # a move is pending: rejoin once released
        self._followup_at = float("inf")  # leader: rejoin then (a reservation expires)
        self._applied_at = float("-inf")  # when the current generation was applied
        self._settle = FOLLOWUP_SETTLE  # see CoordinatorFound.prompt_sync
        self._moving_until = float("-inf")  # beat every MOVING_HEARTBEAT until then
        self._members: Mapping[str, bytes] = {}
        self._coordinator_known = False
        self._inflight: Request | None = None
        self._wake_at = 0.0  # backoff: no new request before this
        self._last_contact = float("-inf")  # sent_at of the last successful request
        self._next_heartbeat = float("inf")
        self._rejoin_reason = "start"
        self._closing = False  # Leave was fed: a LeaveGroup ends in CLOSED
        self._pause_reason: str | None = None  # set by Pause, cleared by Resume

    @property
    def is_leader(self) -> bool:
        return bool(self.member_id) and self.member_id == self.leader_id

    @property
    def fence_deadline(self) -> float:
        """When a member holding partitions revokes them if no heartbeat succeeded."""
        s = self.settings
        return self._last_contact + s.session_timeout - s.fence_margin

    # ---- answers ---------------------------------------------------------------------

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
            self._settle = PROMPT_SETTLE if ev.prompt_sync else FOLLOWUP_SETTLE
            if self.state == State.FINDING_COORDINATOR:
                self.state = State.JOINING
            elif self.state == State.STABLE:
                self._next_heartbeat = ev.now  # tell the new coordinator we are alive now
        elif isinstance(ev, JoinResponse):
            self._expect(Request.JOIN, ev)
            self._on_join(ev, out)
        elif isinstance(ev, AssignmentCommitted):
            self._expect(Request.ASSIGN, ev)
            self._on_committed(ev, out)
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
            self._left(ev.now)
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
            self._members = dict(ev.members) if self.is_leader else {}
            if self.is_leader and self.member_id not in self._members:
                raise MembershipProtocolError("leader's JoinResponse does not list the leader")
            if ev.now >= ev.sent_at + self.settings.heartbeat_interval:
                # The broker held the join (for the other members; Tansu holds every join
                # for half the session) and restarted our session when it completed, at a
                # time we cannot know. Without a date the leader's 2PC and the sync would
                # have only what the hold left of the session (seen: a leader on a loaded
                # machine fenced itself mid-rebalance). Both brokers answer a heartbeat
                # between join and sync; its send time is a date the session surely ran from.
                self.state = State.CONFIRMING
                out.append(self._heartbeat(ev.now))
            else:
                self._after_join(out)
        elif err == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = ev.member_id
            self._rejoin(out, ev.now, "member id assigned", backoff=False)
        else:
            self._on_rebalance_error(err, ev.now, out, "JoinGroup")

    def _after_join(self, out: list[Command]) -> None:
        """Joined: the leader runs the assignment, a follower waits for it in SyncGroup."""
        if self.is_leader:
            self.state = State.ASSIGNING
            self._inflight = Request.ASSIGN
            out.append(RunAssignment(self.generation, self.member_id, self._members))
        else:
            self.state = State.AWAITING_SYNC
            self._inflight = Request.SYNC
            out.append(self._sync({}))

    def _on_rebalance_error(self, err: ErrorCode, now: float, out: list[Command], api: str) -> None:
        """An error answer to a request of the rebalance (join, confirming heartbeat, sync)."""
        if err == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
            self._rejoin(out, now, "unknown member id", backoff=False, lost=True)
        elif err in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            lost = err == ErrorCode.ILLEGAL_GENERATION
            self._rejoin(out, now, err.name.lower(), backoff=False, lost=lost)
        else:
            self._on_common_error(err, now, out, api)

    def _on_committed(self, ev: AssignmentCommitted, out: list[Command]) -> None:
        if ev.generation != self.generation:
            raise MembershipProtocolError(
                f"assignment of generation {ev.generation} committed, in {self.generation}"
            )
        self.state = State.AWAITING_SYNC
        self._inflight = Request.SYNC
        if ev.followup is not None:
            self._followup_at = ev.now + ev.followup
        out.append(self._sync({m: ev.blob for m in self._members}))

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
        else:
            self._on_rebalance_error(err, ev.now, out, "SyncGroup")

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
            reason = "session lapsed while reading the assignment"
            self._rejoin(out, ev.now, reason, backoff=False, lost=True)
            return
        self.state = State.STABLE
        new = tuple(ev.partitions)
        # Cooperative: what this generation no longer gives us moves; the rest stays as it is.
        moved = tuple(sorted(set(self.assigned or ()) - set(new)))
        self.assigned = new
        self.generation_protocol = ev.protocol
        self._applied_at = ev.now
        self._moving_until = ev.now + MOVING_WINDOW if ev.moving else float("-inf")
        self._next_heartbeat = self._last_contact + self._heartbeat_interval(ev.now)
        # Assign first: the release then commits the moved partitions' final positions under
        # this generation (the broker refuses the previous one once this one exists).
        out.append(Assign(self.generation, self.assigned))
        if moved:
            self.releasing |= set(moved)
            self._rejoin_when_released = True
            reason = f"moving to another member (generation {ev.generation})"
            out.append(Revoke(moved, reason, False))

    def _heartbeat_interval(self, now: float) -> float:
        hb = self.settings.heartbeat_interval
        return min(hb, MOVING_HEARTBEAT) if now < self._moving_until else hb

    def _on_heartbeat(self, ev: HeartbeatResponse, out: list[Command]) -> None:
        err = ev.error
        s = self.settings
        if self.state == State.CONFIRMING:
            if err == ErrorCode.NONE:
                self._last_contact = max(self._last_contact, ev.sent_at)
                self._after_join(out)
            else:
                self._on_rebalance_error(err, ev.now, out, "Heartbeat")
            return
        if self.state != State.STABLE:
            return  # the member fenced itself while this heartbeat was in flight
        if err == ErrorCode.NONE:
            self._last_contact = max(self._last_contact, ev.sent_at)
            self._next_heartbeat = ev.sent_at + self._heartbeat_interval(ev.now)
        elif err == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
            self._rejoin(out, ev.now, "unknown member id", backoff=False, lost=True)
        elif err in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
            lost = err == ErrorCode.ILLEGAL_GENERATION
            self._rejoin(out, ev.now, err.name.lower(), backoff=False, lost=lost)
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
        if ev.fatal and kind != Request.LEAVE:
            self._fatal(out, reason)
            return
        if kind == Request.FIND:
            self._wake_at = ev.now + s.retry_backoff
        elif kind == Request.HEARTBEAT:
            self._coordinator_known = False
            self._wake_at = ev.now + s.retry_backoff
            if self.state == State.CONFIRMING:
                self._rejoin(out, ev.now, reason, backoff=True)
        elif kind in (Request.JOIN, Request.SYNC):
            self._coordinator_known = False
            self._rejoin(out, ev.now, reason, backoff=True)
        elif kind in (Request.ASSIGN, Request.READ):
            self._rejoin(out, ev.now, reason, backoff=True)
        elif kind == Request.LEAVE:
            self._left(ev.now)  # out either way: the broker drops us when the session ends

    def _on_common_error(self, err: ErrorCode, now: float, out: list[Command], api: str) -> None:
        if err in COORDINATOR_MOVED:
            self._coordinator_known = False
            self._rejoin(out, now, f"{api}: {err.name}", backoff=True)
        elif err in FATAL_ERRORS:
            self._fatal(out, f"{api}: {err.name}")
        else:
            self._rejoin(out, now, f"{api}: {err.name}", backoff=True)

    # ---- helpers ---------------------------------------------------------------------

    def _heartbeat(self, now: float) -> SendHeartbeat:
        s = self.settings
        self._inflight = Request.HEARTBEAT
        timeout = s.request_timeout
        if self.assigned is not None:
            # A member holding partitions learns nothing from an answer after its fence.
            timeout = min(timeout, max(_MIN_REQUEST_TIMEOUT, self.fence_deadline - now))
        return SendHeartbeat(self.generation, self.member_id, s.group_instance_id, timeout)

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

    @property
    def owned(self) -> tuple[int, ...]:
        """Partitions this member owns: assigned, or still being released."""
        return tuple(sorted(set(self.assigned or ()) | self.releasing))

    @property
    def keeps_partitions(self) -> bool:
        """Whether a rebalance leaves this member its partitions (cooperative): it speaks the
        cooperative protocol and the generation it holds ran it. After an eager generation
        it revokes everything, since that generation's leader may not honour what it owns."""
        return self.settings.cooperative and self.generation_protocol == "cooperative"

    def _revoke(self, out: list[Command], reason: str, *, lost: bool = False) -> None:
        """Let go of everything owned, before the next command (waits for moves too)."""
        if self.assigned is not None or self.releasing:
            out.append(Revoke(self.owned, reason, lost=lost))
            self.assigned = None
            self.releasing = frozenset()
            self._rejoin_when_released = False

    def _rejoin(
        self, out: list[Command], now: float, reason: str, *, backoff: bool, lost: bool = False
    ) -> None:
        """Leave the current generation and join again: revoking first, unless cooperative
        and not `lost` (the broker dropped us, so others may be given our partitions)."""
        if lost or not self.keeps_partitions:
            self._revoke(out, reason, lost=lost)
        self._followup_at = float("inf")
        self._rejoin_reason = reason
        self._next_heartbeat = float("inf")
        self._wake_at = now + self.settings.retry_backoff if backoff else now
        self.state = State.JOINING if self._coordinator_known else State.FINDING_COORDINATOR

    def _left(self, now: float) -> None:
        """A LeaveGroup ended: closed, paused, or (resumed meanwhile) joining again afresh."""
        self.member_id = ""
        if self._closing:
            self.state = State.CLOSED
        elif self._pause_reason is not None:
            self.state = State.PAUSED
        else:
            self._rejoin([], now, "resumed", backoff=False)

    def _fatal(self, out: list[Command], reason: str) -> None:
        self._revoke(out, reason, lost=True)
        self.state = State.FENCED
        out.append(Fenced(reason, fatal=True))
