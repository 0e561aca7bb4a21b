"""The membership machine's vocabulary: its states, and the events in and commands out.

`coordinator.membership.Membership` consumes `Event`s and returns `Command`s; the I/O layer
(`coordinator.member`) runs the commands and feeds back their outcomes. Commands split in two:
`RequestCommand`s are work on the network (at most one in flight), `LocalCommand`s tell the
worker what it holds. On close a pending request may be abandoned, a local command never is.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ringleader.coordinator.errors import ErrorCode


class State(enum.Enum):
    UNJOINED = "unjoined"  # not started
    FINDING_COORDINATOR = "finding-coordinator"  # no membership; locating the coordinator
    JOINING = "joining"  # JoinGroup pending or in flight
    CONFIRMING = "confirming"  # joined after a held JoinGroup; a heartbeat dates the session
    ASSIGNING = "assigning"  # leader: running the assignor and the 2PC commit
    AWAITING_SYNC = "awaiting-sync"  # SyncGroup in flight
    READING_ASSIGNMENT = "reading-assignment"  # reading the committed assignment log
    STABLE = "stable"  # holding a committed generation; heartbeating
    LEAVING = "leaving"  # LeaveGroup in flight (closing, or pausing)
    PAUSED = "paused"  # out of the group on request (Pause) until Resume; holds nothing
    CLOSED = "closed"
    FENCED = "fenced"  # terminal: fenced for good (static id taken) or a fatal error


TERMINAL_STATES = frozenset({State.CLOSED, State.FENCED})


class Request(enum.Enum):
    """Kinds of work the I/O layer runs on the machine's behalf; one at a time."""

    FIND = "find-coordinator"
    JOIN = "join"
    ASSIGN = "assign"
    SYNC = "sync"
    READ = "read-assignment"
    HEARTBEAT = "heartbeat"
    LEAVE = "leave"


# Answers (to a join, sync or heartbeat) after which rejoining cannot help.
FATAL_ERRORS = frozenset(
    {
        ErrorCode.FENCED_INSTANCE_ID,
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
        ErrorCode.INVALID_SESSION_TIMEOUT,
        ErrorCode.INVALID_GROUP_ID,
        ErrorCode.GROUP_AUTHORIZATION_FAILED,
        ErrorCode.GROUP_MAX_SIZE_REACHED,
        ErrorCode.UNSUPPORTED_VERSION,
    }
)


# ---- events (in) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    now: float


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class CoordinatorFound:
    now: float
    # The coordinator answers every follower's SyncGroup as soon as the leader's arrives
    # (Apache Kafka); False when not known to (Tansu answers them on a tick).
    prompt_sync: bool = False


@dataclass(frozen=True)
class JoinResponse:
    now: float
    sent_at: float
    error: ErrorCode
    generation: int = -1
    member_id: str = ""
    leader: str = ""
    protocol_name: str | None = None
    members: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class AssignmentCommitted:
    """Leader: the assignment of `generation` is committed; `blob` points members at it.
    `followup`: rejoin after this many seconds (partitions held back for a departed static
    member are due to move then)."""

    now: float
    generation: int
    blob: bytes
    followup: float | None = None


@dataclass(frozen=True)
class SyncResponse:
    now: float
    sent_at: float
    error: ErrorCode
    assignment: bytes = b""


@dataclass(frozen=True)
class AssignmentRead:
    """The committed assignment of `generation` was read; None = missing or inconsistent.
    `protocol` is the rebalance protocol the generation runs ("eager" or "cooperative")."""

    now: float
    generation: int
    partitions: tuple[int, ...] | None
    protocol: str = "eager"
    # Some member releases partitions in this generation: a follow-up rebalance is coming.
    moving: bool = False


@dataclass(frozen=True)
class HeartbeatResponse:
    now: float
    sent_at: float
    error: ErrorCode


@dataclass(frozen=True)
class LeaveResponse:
    now: float
    error: ErrorCode


@dataclass(frozen=True)
class RequestFailed:
    """The request did not get an answer (connection lost, timeout, publish/read failed)."""

    now: float
    request: Request
    reason: str = ""
    fatal: bool = False  # the broker refused this client (credentials, TLS): never retry


@dataclass(frozen=True)
class Released:
    """Partitions revoked with `Revoke(wait=False)` are drained, committed and let go."""

    now: float
    partitions: tuple[int, ...]


@dataclass(frozen=True)
class Leave:
    """Close: revoke, leave the group. Any request in flight has been abandoned."""

    now: float


@dataclass(frozen=True)
class Pause:
    """Leave the group (revoking first) and stay out until `Resume`: the worker cannot serve
    partitions now (e.g. Redis is unreachable). Any request in flight has been abandoned."""

    now: float
    reason: str


@dataclass(frozen=True)
class Resume:
    """Rejoin after a `Pause`."""

    now: float


Event = (
    Start
    | Tick
    | CoordinatorFound
    | JoinResponse
    | AssignmentCommitted
    | SyncResponse
    | AssignmentRead
    | HeartbeatResponse
    | LeaveResponse
    | RequestFailed
    | Released
    | Leave
    | Pause
    | Resume
)

# ---- commands (out) ----------------------------------------------------------------------


@dataclass(frozen=True)
class FindCoordinator:
    timeout: float


@dataclass(frozen=True)
class SendJoin:
    """JoinGroup. `owned`: partitions the member still owns (cooperative: kept or being
    released), reported in its metadata; `leaving`: it is shutting down, give it nothing."""

    member_id: str
    group_instance_id: str | None
    protocol_name: str
    reason: str
    timeout: float
    owned: tuple[int, ...] = ()
    leaving: bool = False


@dataclass(frozen=True)
class RunAssignment:
    """Leader: assign, commit the assignment (2PC), answer AssignmentCommitted."""

    generation: int
    leader_id: str
    members: Mapping[str, bytes]


@dataclass(frozen=True)
class SendSync:
    generation: int
    member_id: str
    group_instance_id: str | None
    protocol_name: str | None
    assignments: Mapping[str, bytes]
    timeout: float


@dataclass(frozen=True)
class ReadAssignment:
    generation: int
    member_id: str  # whose part of the committed assignment to read
    blob: bytes


@dataclass(frozen=True)
class Assign:
    generation: int
    partitions: tuple[int, ...]


@dataclass(frozen=True)
class Revoke:
    """Let these partitions go. `wait` (eager, leave, fence): done before the next command
    runs. Not `wait` (a cooperative move): drained in the background while the member keeps
    heartbeating; the I/O layer feeds `Released` when they are let go. `lost`: the session is
    gone or going, so others may soon be given them (Kafka's onPartitionsLost): let go fast."""

    partitions: tuple[int, ...]
    reason: str
    wait: bool = True
    lost: bool = False  # the membership is gone (fenced, unknown member): others may own them


@dataclass(frozen=True)
class SendHeartbeat:
    generation: int
    member_id: str
    group_instance_id: str | None
    timeout: float


@dataclass(frozen=True)
class SendLeave:
    member_id: str
    group_instance_id: str | None
    timeout: float


@dataclass(frozen=True)
class Fenced:
    """The member lost its membership; `fatal` means it must not rejoin."""

    reason: str
    fatal: bool


# Work on the network (or the 2PC log) whose outcome comes back as an event.
RequestCommand = (
    FindCoordinator
    | SendJoin
    | RunAssignment
    | SendSync
    | ReadAssignment
    | SendHeartbeat
    | SendLeave
)
# What the worker must be told; run on the member thread, never dropped.
LocalCommand = Assign | Revoke | Fenced
Command = RequestCommand | LocalCommand
