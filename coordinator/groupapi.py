"""The group-protocol requests as values: build kafka.protocol requests, decode responses.

Pure (no sockets): each `*_request` builds one kafka-python request object for the version the
connection negotiated, each `decode_*` turns the response object into this package's result
types. `coordinator.wire` sends them. Versions are capped at what this module was tested with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)
from kafka.protocol.metadata import FindCoordinatorRequest

from ringleader.coordinator.errors import CoordinatorError, ErrorCode

PROTOCOL_TYPE = "ringleader"

# Highest version of each API this module speaks. OffsetCommit/OffsetFetch stop before the
# versions that switch to topic ids / batched groups; FindCoordinator v4+ is batched (handled).
CAPS: dict[int, int] = {
    FindCoordinatorRequest.API_KEY: 6,
    JoinGroupRequest.API_KEY: 9,
    SyncGroupRequest.API_KEY: 5,
    HeartbeatRequest.API_KEY: 4,
    LeaveGroupRequest.API_KEY: 5,
    OffsetCommitRequest.API_KEY: 8,
    OffsetFetchRequest.API_KEY: 7,
}
# Lowest versions whose fields this module relies on (member id handshake, v4 join).
FLOORS: dict[int, int] = {
    JoinGroupRequest.API_KEY: 4,
    SyncGroupRequest.API_KEY: 1,
    HeartbeatRequest.API_KEY: 1,
    LeaveGroupRequest.API_KEY: 1,
}


@dataclass(frozen=True)
class CoordinatorAddress:
    node_id: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (node {self.node_id})"


@dataclass(frozen=True)
class JoinedMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True)
class JoinResult:
    error: ErrorCode
    generation: int
    member_id: str
    leader: str
    protocol_name: str | None
    members: tuple[JoinedMember, ...]


@dataclass(frozen=True)
class SyncResult:
    error: ErrorCode
    assignment: bytes


@dataclass(frozen=True)
class PartitionOffset:
    offset: int
    metadata: str | None
    error: ErrorCode


def find_coordinator_request(version: int, group_id: str) -> Any:
    if version >= 4:  # batched: one key per coordinator asked for
        return FindCoordinatorRequest(key_type=0, coordinator_keys=[group_id])
    return FindCoordinatorRequest(key=group_id, key_type=0)


def decode_find_coordinator(version: int, resp: Any, address: str) -> CoordinatorAddress:
    """The coordinator's address; raises CoordinatorError for an error answer."""
    if version >= 4:
        if not resp.coordinators:
            raise CoordinatorError("FindCoordinator", ErrorCode.COORDINATOR_NOT_AVAILABLE)
        c = resp.coordinators[0]
        code, node_id, host, port = c.error_code, c.node_id, c.host, c.port
    else:
        code, node_id, host, port = resp.error_code, resp.node_id, resp.host, resp.port
    if code != 0:
        raise CoordinatorError("FindCoordinator", ErrorCode.of(code), address)
    return CoordinatorAddress(int(node_id), str(host), int(port))


def join_request(
    group_id: str,
    *,
    member_id: str,
    group_instance_id: str | None,
    session_timeout_ms: int,
    rebalance_timeout_ms: int,
    protocols: Sequence[tuple[str, bytes]],
    reason: str | None,
) -> Any:
    return JoinGroupRequest(
        group_id=group_id,
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=rebalance_timeout_ms,
        member_id=member_id,
        group_instance_id=group_instance_id,
        protocol_type=PROTOCOL_TYPE,
        protocols=[
            JoinGroupRequest.JoinGroupRequestProtocol(name=n, metadata=m) for n, m in protocols
        ],
        reason=reason,
    )


def decode_join(resp: Any) -> JoinResult:
    return JoinResult(
        error=ErrorCode.of(resp.error_code),
        generation=int(resp.generation_id),
        member_id=str(resp.member_id or ""),
        leader=str(resp.leader or ""),
        protocol_name=resp.protocol_name,
        members=tuple(
            JoinedMember(str(m.member_id), m.group_instance_id, bytes(m.metadata or b""))
            for m in resp.members
        ),
    )


def sync_request(
    group_id: str,
    *,
    generation: int,
    member_id: str,
    group_instance_id: str | None,
    protocol_name: str | None,
    assignments: Mapping[str, bytes],
) -> Any:
    return SyncGroupRequest(
        group_id=group_id,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=group_instance_id,
        protocol_type=PROTOCOL_TYPE,
        protocol_name=protocol_name,
        assignments=[
            SyncGroupRequest.SyncGroupRequestAssignment(member_id=m, assignment=a)
            for m, a in assignments.items()
        ],
    )


def decode_sync(resp: Any) -> SyncResult:
    return SyncResult(ErrorCode.of(resp.error_code), bytes(resp.assignment or b""))


def heartbeat_request(
    group_id: str, *, generation: int, member_id: str, group_instance_id: str | None
) -> Any:
    return HeartbeatRequest(
        group_id=group_id,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=group_instance_id,
    )


def leave_request(
    version: int, group_id: str, *, member_id: str, group_instance_id: str | None
) -> Any:
    if version >= 3:  # batched: a list of members, each with a reason
        identity = LeaveGroupRequest.MemberIdentity(
            member_id=member_id, group_instance_id=group_instance_id, reason="close"
        )
        return LeaveGroupRequest(group_id=group_id, members=[identity])
    return LeaveGroupRequest(group_id=group_id, member_id=member_id)


def decode_leave(version: int, resp: Any) -> ErrorCode:
    """The group's code, or from v3 on the first member's error under a successful answer."""
    code = ErrorCode.of(resp.error_code)
    if code == ErrorCode.NONE and version >= 3:
        for m in resp.members:
            if m.error_code != 0:
                return ErrorCode.of(m.error_code)
    return code


def offset_commit_request(
    group_id: str,
    *,
    generation: int,
    member_id: str,
    group_instance_id: str | None,
    topic: str,
    offsets: Mapping[int, int],
    metadata: str | None,
) -> Any:
    topic_cls = OffsetCommitRequest.OffsetCommitRequestTopic
    part = topic_cls.OffsetCommitRequestPartition
    partitions = [
        part(
            partition_index=p,
            committed_offset=o,
            committed_leader_epoch=-1,
            commit_timestamp=-1,
            committed_metadata=metadata,
        )
        for p, o in sorted(offsets.items())
    ]
    return OffsetCommitRequest(
        group_id=group_id,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        group_instance_id=group_instance_id,
        retention_time_ms=-1,
        topics=[topic_cls(name=topic, partitions=partitions)],
    )


def decode_offset_commit(resp: Any) -> dict[int, ErrorCode]:
    return {
        int(p.partition_index): ErrorCode.of(p.error_code)
        for t in resp.topics
        for p in t.partitions
    }


def offset_fetch_request(group_id: str, *, topic: str, partitions: Sequence[int]) -> Any:
    wanted = OffsetFetchRequest.OffsetFetchRequestTopic(
        name=topic, partition_indexes=list(partitions)
    )
    return OffsetFetchRequest(group_id=group_id, topics=[wanted], require_stable=False)


def decode_offset_fetch(resp: Any, address: str) -> dict[int, PartitionOffset]:
    """Committed offsets (-1 where none is); raises CoordinatorError for a group-level error."""
    top = ErrorCode.of(getattr(resp, "error_code", 0) or 0)
    if top != ErrorCode.NONE:
        raise CoordinatorError("OffsetFetch", top, address)
    return {
        int(p.partition_index): PartitionOffset(
            int(p.committed_offset), p.metadata, ErrorCode.of(p.error_code)
        )
        for t in resp.topics
        for p in t.partitions
    }
