"""`GroupClient`: the group requests of one member, on one connection to its coordinator.

Requests are built and decoded by `coordinator.groupapi` and framed by
`coordinator.connection`; this module tracks which broker coordinates the group and refuses
every request once aborted (so `Member.close` can cut a JoinGroup the broker holds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kafka.protocol.consumer.group import (
    HeartbeatResponse,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    SyncGroupResponse,
)

from ringleader.coordinator import groupapi as api
from ringleader.coordinator.connection import Connection, find_coordinator
from ringleader.coordinator.errors import BrokerUnavailableError, ErrorCode
from ringleader.coordinator.groupapi import (
    CoordinatorAddress,
    JoinResult,
    PartitionOffset,
    SyncResult,
)
from ringleader.security import KafkaSecurity

# Connection and find_coordinator moved to coordinator.connection; the operator views import
# them from here.
__all__ = ["Connection", "GroupClient", "find_coordinator"]


_CONSUMER_GROUP_HEARTBEAT = 68  # API key


class GroupClient:
    """The group requests of one member, on one connection to its group coordinator."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        group_id: str,
        *,
        client_id: str = "ringleader",
        connect_timeout: float = 5.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.group_id = group_id
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.coordinator: CoordinatorAddress | None = None
        self._conn: Connection | None = None
        self._aborted = False

    def _check_open(self) -> None:
        if self._aborted:
            raise BrokerUnavailableError(f"group {self.group_id!r}: client was aborted/closed")

    def find_coordinator(self, timeout: float) -> CoordinatorAddress:
        """Locate the coordinator and point this client's connection at it."""
        self._check_open()
        found = find_coordinator(
            self.bootstrap,
            self.group_id,
            timeout=timeout,
            client_id=self.client_id,
            security=self.security,
        )
        old = self._conn
        if old is None or (old.host, old.port) != (found.host, found.port):
            self._conn = Connection(
                found.host,
                found.port,
                client_id=self.client_id,
                connect_timeout=self.connect_timeout,
                security=self.security,
            )
            if old is not None:
                old.close()
        self.coordinator = found
        return found

    def answers_syncs_promptly(self) -> bool:
        """Whether the coordinator is known to answer every follower's SyncGroup as soon as
        the leader's arrives. Told by its API versions: ConsumerGroupHeartbeat (key 68,
        KIP-848) is offered by Apache Kafka's group coordinator since 3.7, which does; not by
        Tansu, which answers them on a tick. Unknown brokers count as not (the safe wait)."""
        return _CONSUMER_GROUP_HEARTBEAT in self._connection().api_versions()

    def _connection(self) -> Connection:
        self._check_open()
        if self._conn is None:
            raise BrokerUnavailableError(
                f"group {self.group_id!r}: coordinator unknown; call find_coordinator first"
            )
        return self._conn

    def join_group(
        self,
        *,
        member_id: str,
        group_instance_id: str | None,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocols: Sequence[tuple[str, bytes]],
        timeout: float,
        reason: str | None = None,
    ) -> JoinResult:
        conn = self._connection()
        req = api.join_request(
            self.group_id,
            member_id=member_id,
            group_instance_id=group_instance_id,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            protocols=protocols,
            reason=reason,
        )
        return api.decode_join(conn.request(req, JoinGroupResponse, timeout))

    def sync_group(
        self,
        *,
        generation: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_name: str | None,
        assignments: Mapping[str, bytes],
        timeout: float,
    ) -> SyncResult:
        conn = self._connection()
        req = api.sync_request(
            self.group_id,
            generation=generation,
            member_id=member_id,
            group_instance_id=group_instance_id,
            protocol_name=protocol_name,
            assignments=assignments,
        )
        return api.decode_sync(conn.request(req, SyncGroupResponse, timeout))

    def heartbeat(
        self, *, generation: int, member_id: str, group_instance_id: str | None, timeout: float
    ) -> ErrorCode:
        conn = self._connection()
        req = api.heartbeat_request(
            self.group_id,
            generation=generation,
            member_id=member_id,
            group_instance_id=group_instance_id,
        )
        return ErrorCode.of(conn.request(req, HeartbeatResponse, timeout).error_code)

    def leave_group(
        self, *, member_id: str, group_instance_id: str | None, timeout: float
    ) -> ErrorCode:
        conn = self._connection()
        version, resp = conn.request_built(
            lambda v: api.leave_request(
                v, self.group_id, member_id=member_id, group_instance_id=group_instance_id
            ),
            LeaveGroupRequest,
            LeaveGroupResponse,
            timeout,
        )
        return api.decode_leave(version, resp)

    def commit_offsets(
        self,
        *,
        generation: int,
        member_id: str,
        group_instance_id: str | None,
        topic: str,
        offsets: Mapping[int, int],
        timeout: float,
        metadata: str | None = None,
    ) -> dict[int, ErrorCode]:
        """OffsetCommit fenced by (generation, member id); returns each partition's code.

        Pass generation=-1 and member_id="" for an unfenced commit (the group must be empty).
        """
        conn = self._connection()
        req = api.offset_commit_request(
            self.group_id,
            generation=generation,
            member_id=member_id,
            group_instance_id=group_instance_id,
            topic=topic,
            offsets=offsets,
            metadata=metadata,
        )
        return api.decode_offset_commit(conn.request(req, OffsetCommitResponse, timeout))

    def fetch_offsets(
        self, *, topic: str, partitions: Sequence[int], timeout: float
    ) -> dict[int, PartitionOffset]:
        """Committed offsets of `partitions` (-1 where none is committed)."""
        conn = self._connection()
        req = api.offset_fetch_request(self.group_id, topic=topic, partitions=partitions)
        return api.decode_offset_fetch(
            conn.request(req, OffsetFetchResponse, timeout), conn.address
        )

    def abort(self) -> None:
        """Stop this client from another thread: a request in flight (e.g. a JoinGroup the
        broker holds) fails at once, and so does every later request."""
        self._aborted = True
        conn = self._conn
        if conn is not None:
            conn.abort()

    def close(self) -> None:
        self._aborted = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
