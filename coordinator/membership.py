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
* Pausing (the worker cannot serve partitions, e.g. Redis is unreachable): `Pause` revokes
  what is held, leaves the group and keeps the member out (PAUSED: no requests at all) until
  `Resume`, which joins afresh. A member paused before it starts never joins.

The reactions to each request's answer are in `coordinator.answers` (`MembershipCore`).
"""

from __future__ import annotations

from ringleader.coordinator.answers import (
    FOLLOWUP_SETTLE,
    MOVING_HEARTBEAT,
    MOVING_WINDOW,
    PROMPT_SETTLE,
    MembershipCore,
    MembershipProtocolError,
)
from ringleader.coordinator.messages import (
    TERMINAL_STATES,
    Assign,
    Command,
    Event,
    Fenced,
    FindCoordinator,
    Leave,
    Pause,
    Released,
    Request,
    Resume,
    Revoke,
    SendJoin,
    SendLeave,
    Start,
    State,
    Tick,
)

__all__ = [
    "FOLLOWUP_SETTLE",
    "MOVING_HEARTBEAT",
    "MOVING_WINDOW",
    "PROMPT_SETTLE",
    "Membership",
    "MembershipProtocolError",
]


class Membership(MembershipCore):
    """The membership of one member in one group."""

    # Rebalances this member went through (each applied generation ends one, the first join
    # included) and how long the last took: from leaving STABLE to the generation applied.
    rebalances = 0
    last_rebalance: float | None = None
    _rebalance_from: float | None = None

    # ---- queries ---------------------------------------------------------------------

    @property
    def coordinator_known(self) -> bool:
        return self._coordinator_known

    @property
    def inflight(self) -> Request | None:
        return self._inflight

    @property
    def pause_reason(self) -> str | None:
        """Why the member is paused (or pausing); None when it is not."""
        return self._pause_reason

    def next_deadline(self) -> float | None:
        """When the I/O layer must feed a Tick at the latest (None: only on the next event)."""
        if self.state in TERMINAL_STATES:
            return None
        times: list[float] = []
        if self.assigned is not None or self.releasing:
            times.append(self.fence_deadline)
        if self._inflight is None:
            if self.state == State.STABLE and self._coordinator_known:
                times.append(max(self._wake_at, self._next_heartbeat))
                times.append(max(self._wake_at, self._followup_at))
                if self._rejoin_when_released and not self.releasing:
                    times.append(max(self._wake_at, self._applied_at + self._settle))
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
        elif isinstance(event, Pause):
            self._pause(event, out)
        elif isinstance(event, Resume):
            self._resume(event, out)
        elif isinstance(event, Released):
            self.releasing -= set(event.partitions)
        elif isinstance(event, Tick):
            pass
        else:
            self._response(event, out)
        self._check_fence(event.now, out)
        self._finish_leave(out)
        self._drive(event.now, out)
        self._time_rebalance(event.now, out)
        return out

    def _time_rebalance(self, now: float, out: list[Command]) -> None:
        if any(isinstance(c, Assign) for c in out) and self._rebalance_from is not None:
            self.rebalances += 1
            self.last_rebalance = now - self._rebalance_from
            self._rebalance_from = None
        elif self.state != State.STABLE and self._rebalance_from is None:
            self._rebalance_from = now

    # ---- controls --------------------------------------------------------------------

    def _start(self, ev: Start, out: list[Command]) -> None:
        if self.state != State.UNJOINED:
            raise MembershipProtocolError(f"Start in state {self.state.name}")
        self.state = State.FINDING_COORDINATOR if self._pause_reason is None else State.PAUSED
        self._wake_at = ev.now

    def _leave(self, ev: Leave, out: list[Command]) -> None:
        if self._closing:
            return
        self._closing = True
        self._inflight = None  # the I/O layer dropped whatever was queued
        if self.keeps_partitions and self.state == State.STABLE:
            # Graceful (cooperative): keep heartbeating while the partitions drain, so running
            # tasks can finish and nobody is given the partitions meanwhile; leave once they
            # are released (`_finish_leave`).
            moved, self.assigned = self.assigned or (), ()
            if moved:
                self.releasing |= set(moved)
                out.append(Revoke(moved, "leave", False))
            return
        self._revoke(out, "leave")
        self._send_leave(out)

    @property
    def retiring(self) -> bool:
        """Closing gracefully: still a member while owned partitions drain."""
        return self._closing and self.state not in (State.LEAVING, *TERMINAL_STATES)

    def _finish_leave(self, out: list[Command]) -> None:
        """Closing gracefully and everything is released: leave now."""
        if not self.retiring or self.releasing or self._inflight is not None:
            return
        if self.state == State.STABLE or self.state in (
            State.JOINING,
            State.FINDING_COORDINATOR,
        ):
            self._revoke(out, "leave")
            self._send_leave(out)

    def _send_leave(self, out: list[Command]) -> None:
        s = self.settings
        # Static members do not leave: the broker keeps their place for the session timeout
        # so a restart under the same instance id causes no rebalance (as Kafka clients do).
        if self.member_id and self._coordinator_known and s.group_instance_id is None:
            self.state = State.LEAVING
            self._inflight = Request.LEAVE
            out.append(SendLeave(self.member_id, None, s.request_timeout))
        else:
            self.state = State.CLOSED

    def _pause(self, ev: Pause, out: list[Command]) -> None:
        if self._closing:
            return  # closing wins: the LeaveGroup in flight ends in CLOSED
        self._pause_reason = ev.reason
        if self.state in (State.PAUSED, State.UNJOINED):
            return  # UNJOINED: Start goes straight to PAUSED
        self._inflight = None  # the I/O layer abandoned whatever was in flight
        self._revoke(out, f"paused: {ev.reason}")
        self._next_heartbeat = float("inf")
        s = self.settings
        if self.member_id and self._coordinator_known:
            # Static members leave too (with their instance id): the point of pausing is that
            # the others take the partitions now, not after the session timeout.
            self.state = State.LEAVING
            self._inflight = Request.LEAVE
            out.append(SendLeave(self.member_id, s.group_instance_id, s.request_timeout))
        else:
            self.state = State.PAUSED  # not a member (or cannot say so): nothing to leave

    def _resume(self, ev: Resume, out: list[Command]) -> None:
        if self._pause_reason is None:
            return
        self._pause_reason = None
        if self.state == State.PAUSED:
            self._rejoin(out, ev.now, "resumed", backoff=False)
        # LEAVING: the LeaveGroup's end rejoins (`_left`); UNJOINED: Start joins.

    # ---- fencing and the next request -------------------------------------------------

    def _check_fence(self, now: float, out: list[Command]) -> None:
        if (self.assigned is None and not self.releasing) or now < self.fence_deadline:
            return
        reason = "session lapsed without a successful heartbeat"
        self._rejoin(out, now, reason, backoff=False, lost=True)
        out.append(Fenced(reason, fatal=False))
        # An in-flight heartbeat cannot rescue the session any more; its answer is awaited
        # (the I/O layer bounds it by the fence deadline) and then the member rejoins.

    def _drive(self, now: float, out: list[Command]) -> None:
        """Start the next request if none is in flight and its time has come."""
        if self._inflight is not None or self.state in TERMINAL_STATES or now < self._wake_at:
            return
        s = self.settings
        if self.state == State.STABLE:
            settled = now >= self._applied_at + self._settle
            if self._rejoin_when_released and not self.releasing and settled:
                # The second step of a move: the leader can now give them to their new owner.
                self._rejoin(out, now, "released partitions for their new owners", backoff=False)
            elif now >= self._followup_at:
                self._rejoin(out, now, "scheduled rebalance: held-back partitions", backoff=False)
        if self.state in (State.FINDING_COORDINATOR, State.JOINING, State.STABLE) and (
            not self._coordinator_known
        ):
            if self.state == State.JOINING:
                self.state = State.FINDING_COORDINATOR
            self._inflight = Request.FIND
            out.append(FindCoordinator(s.request_timeout))
        elif self.state == State.JOINING:
            self._inflight = Request.JOIN
            if not self.releasing:
                self._rejoin_when_released = False  # this join reports the released ones
            out.append(
                SendJoin(
                    member_id=self.member_id,
                    group_instance_id=s.group_instance_id,
                    protocol_name=s.assignor,
                    reason=self._rejoin_reason,
                    timeout=self._join_timeout(),
                    owned=self.owned,
                    leaving=self._closing,
                )
            )
        elif self.state == State.STABLE and now >= self._next_heartbeat:
            out.append(self._heartbeat(now))
