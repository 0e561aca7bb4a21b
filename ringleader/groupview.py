"""The workers' group as `ringleader status` shows it: state, members and who owns what.

DescribeGroups (through `coordinator.wire`) gives the state and members; each member's
SyncGroup blob is the `AssignmentPointer` of its committed generation, which names the
generation, the leader and the commit record on `<ns>.assignments`; the committed parts
there give every member's partitions. With no live member (or a broker whose DescribeGroups
carries no assignments: Tansu), the last committed generation found on the log is shown
instead, marked as such.

The generation also says how it rebalances (`protocol`: "eager" or "cooperative") and what
is being released in it (`revoking`: a cooperative move takes a partition from its owner in
one generation and gives it to its new owner in the next). `with_activity` adds what the
members' workers report through Redis: the partitions they announce holding and the tasks
they are running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from kafka.protocol.admin.groups import DescribeGroupsRequest, DescribeGroupsResponse

from ringleader.coordinator.assignment import KIND as ASSIGN_KIND
from ringleader.coordinator.assignment import (
    Assignment,
    AssignmentDecodeError,
    AssignmentLog,
    AssignmentPointer,
)
from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.metadata import MemberMetadata, MetadataDecodeError
from ringleader.coordinator.twophase import Applied
from ringleader.coordinator.txlog import TxLogError, TxLogReader
from ringleader.coordinator.wire import Connection, find_coordinator
from ringleader.errors import RingleaderError
from ringleader.worker.ledger import RunningTask
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings

__all__ = [
    "Described",
    "GroupView",
    "LongestRun",
    "MemberView",
    "fill_view",
    "last_committed",
    "read_group",
    "with_activity",
    "worker_id_from_member",
]


@dataclass(frozen=True, slots=True)
class LongestRun:
    task_id: str
    name: str
    age: float  # seconds it has been running


@dataclass(frozen=True, slots=True)
class MemberView:
    member_id: str
    worker_id: str | None
    client_host: str
    partitions: list[int] | None  # None: not in the committed generation shown
    # Owned and to be released in the generation shown (a pending cooperative revocation).
    revoking: list[int] = field(default_factory=list)
    static: bool = False  # joined with a group.instance.id
    # What its worker announces holding now (registry); None: not announced or not read.
    held: list[int] | None = None
    running: int | None = None  # tasks its worker runs now; None: unknown
    longest_running: LongestRun | None = None


@dataclass(slots=True)
class GroupView:
    state: str | None = None
    generation: int | None = None
    leader: str | None = None
    # "live": the members' SyncGroup pointers named it; "log": the last commit on the
    # assignment log (no live member, or a broker that does not describe assignments: Tansu)
    assignment_source: str | None = None
    protocol: str | None = None  # of the generation shown: "eager" or "cooperative"
    revoking: dict[str, list[int]] = field(default_factory=dict)  # member id -> partitions
    members: list[MemberView] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# (member id, client host, member metadata, member assignment) as DescribeGroups gives them
Described = tuple[str, str, bytes, bytes]


def read_group(settings: AppSettings, group: str, timeout: float) -> GroupView:
    """The group's view; a part that cannot be read lands in `errors`, the rest is shown."""
    view = GroupView()
    described = _describe(view, settings, group, timeout)
    if described is None:
        return view
    pointer = _newest_pointer(described)
    assignment = _assignment(view, settings, pointer, timeout)
    fill_view(view, described, pointer, assignment)
    return view


def fill_view(
    view: GroupView,
    described: Sequence[Described],
    pointer: AssignmentPointer | None,
    assignment: Assignment | None,
) -> None:
    """The generation and the members, from what was described and read (pure; the
    assignment's source is already set on `view`)."""
    if assignment is not None:
        view.generation, view.leader = assignment.generation, assignment.leader
        view.protocol = assignment.protocol
        view.revoking = {m: sorted(ps) for m, ps in sorted(assignment.revoking.items())}
    elif pointer is not None:
        view.generation, view.leader = pointer.generation, pointer.leader_id
    for member_id, host, meta, _ in sorted(described):
        worker_id: str | None = None
        with contextlib.suppress(MetadataDecodeError):
            worker_id = MemberMetadata.decode(meta).worker_id
        view.members.append(_member(assignment, member_id, worker_id, host))
    if assignment is not None and view.assignment_source == "log":
        # nobody is live: show who held what last
        live = {d[0] for d in described}
        for member_id in sorted(set(assignment.owners) - live):
            view.members.append(_member(assignment, member_id, None, ""))


def _member(
    assignment: Assignment | None, member_id: str, worker_id: str | None, host: str
) -> MemberView:
    """A member as the generation shown has it. Its worker id: from its metadata, else the
    assignment's record, else its member id (Tansu describes no metadata)."""
    if assignment is None:
        return MemberView(member_id, worker_id or worker_id_from_member(member_id), host, None)
    return MemberView(
        member_id,
        worker_id or assignment.workers.get(member_id) or worker_id_from_member(member_id),
        host,
        assignment.owners.get(member_id),
        revoking=list(assignment.revoking.get(member_id, [])),
        static=member_id in assignment.static,
    )


def with_activity(
    members: Sequence[MemberView],
    running: Mapping[str, Sequence[RunningTask]] | None,
    held: Mapping[str, list[int]],
    now: float,
) -> list[MemberView]:
    """`members` with what their workers report (pure). `running`: worker id -> its runs in
    progress (`worker.ledger.running_live`), None if Redis could not be read; `held`: worker
    id -> partitions it announces; `now`: wall-clock time, as the runs' start times."""
    out = []
    for m in members:
        runs = None if running is None or m.worker_id is None else running.get(m.worker_id)
        longest = None
        if runs:
            first = min(runs, key=lambda r: (r.started_at, r.task_id))
            longest = LongestRun(first.task_id, first.name, max(0.0, now - first.started_at))
        out.append(
            dataclasses.replace(
                m,
                held=None if m.worker_id is None else held.get(m.worker_id),
                running=None if runs is None else len(runs),
                longest_running=longest,
            )
        )
    return out


def _describe(
    view: GroupView, settings: AppSettings, group: str, timeout: float
) -> list[Described] | None:
    """DescribeGroups; sets the state. None (with the reason in `errors`) if it failed."""
    try:
        sec = settings.security
        coord = find_coordinator(settings.bootstrap, group, timeout=timeout, security=sec)
        conn = Connection(coord.host, coord.port, connect_timeout=timeout, security=sec)
        try:
            resp = conn.request(
                DescribeGroupsRequest(groups=[group]), DescribeGroupsResponse, timeout
            )
        finally:
            conn.close()
    except RingleaderError as e:
        view.errors.append(f"group {group!r}: {e}")
        return None
    g = resp.groups[0]
    if g.error_code != 0:
        view.errors.append(f"DescribeGroups: {ErrorCode.of(g.error_code).name}")
        return None
    view.state = str(g.group_state)
    return [
        (
            str(m.member_id),
            str(m.client_host),
            bytes(m.member_metadata or b""),
            bytes(m.member_assignment or b""),
        )
        for m in g.members
    ]


def _newest_pointer(described: list[Described]) -> AssignmentPointer | None:
    pointer: AssignmentPointer | None = None
    for _, _, _, blob in described:
        try:
            p = AssignmentPointer.decode(blob)
        except AssignmentDecodeError:
            continue  # a member between generations, or a broker that leaves it empty
        if pointer is None or p.generation > pointer.generation:
            pointer = p
    return pointer


def _assignment(
    view: GroupView, settings: AppSettings, pointer: AssignmentPointer | None, timeout: float
) -> Assignment | None:
    """The generation the pointer names, else the last one committed on the log."""
    log_topic = topics(settings.namespace).assignments
    try:
        if pointer is None:
            assignment = last_committed(settings, timeout)
            view.assignment_source = None if assignment is None else "log"
            return assignment
        alog = AssignmentLog(settings.bootstrap, log_topic, security=settings.security)
        try:
            assignment = alog.read(pointer, timeout)
        finally:
            alog.close()
        view.assignment_source = "live"
        if assignment is None:
            view.errors.append(f"assignment not readable: {alog.last_reason}")
        return assignment
    except (TxLogError, KafkaException) as e:
        view.errors.append(f"reading {log_topic!r}: {e}")
        return None


_MEMBER_ID = re.compile(
    r"ringleader-(.+)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def worker_id_from_member(member_id: str) -> str | None:
    """Brokers name a member `<client id>-<uuid>`, and workers use the client id
    `ringleader-<worker id>`: the fallback when DescribeGroups carries no member metadata
    (Tansu answers DescribeGroups with empty metadata, assignment, client id and host)."""
    m = _MEMBER_ID.fullmatch(member_id)
    return m.group(1) if m else None


def last_committed(settings: AppSettings, timeout: float) -> Assignment | None:
    """The last consistently committed generation on `<ns>.assignments` (reads the log)."""
    reader = TxLogReader(
        settings.bootstrap,
        topics(settings.namespace).assignments,
        ASSIGN_KIND,
        security=settings.security,
    )
    try:
        last: Applied | None = None
        for o in reader.read_available(timeout):
            if isinstance(o, Applied):
                last = o
        if last is None:
            return None
        try:
            return Assignment.from_parts(last.parts)
        except (ValueError, RingleaderError):
            return None
    finally:
        reader.close()
