"""Thin blocking adapter for the group-membership requests.

Requests are encoded and decoded with kafka-python's public `kafka.protocol` message classes;
this module only frames them on a socket. It never uses kafka-python's client or coordinator
(its join loop can spin forever against Tansu). One TCP connection per object, one request in
flight at a time (a lock), every socket operation bounded by a timeout. Versions are the
highest both sides support (ApiVersions), capped at what this module was tested with.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    SyncGroupRequest,
    SyncGroupResponse,
)
from kafka.protocol.metadata import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)

from ringleader.coordinator.errors import BrokerUnavailableError, CoordinatorError, ErrorCode

PROTOCOL_TYPE = "ringleader"

# Highest version of each API this adapter speaks. OffsetCommit/OffsetFetch stop before the
# versions that switch to topic ids / batched groups; FindCoordinator v4+ is batched (handled).
_CAPS: dict[int, int] = {
    FindCoordinatorRequest.API_KEY: 6,
    JoinGroupRequest.API_KEY: 9,
    SyncGroupRequest.API_KEY: 5,
    HeartbeatRequest.API_KEY: 4,
    LeaveGroupRequest.API_KEY: 5,
    OffsetCommitRequest.API_KEY: 8,
    OffsetFetchRequest.API_KEY: 7,
}
# Lowest versions whose fields this adapter relies on (member id handshake, v4 join).
_FLOORS: dict[int, int] = {
    JoinGroupRequest.API_KEY: 4,
    SyncGroupRequest.API_KEY: 1,
    HeartbeatRequest.API_KEY: 1,
    LeaveGroupRequest.API_KEY: 1,
}
_MAX_FRAME = 64 * 1024 * 1024


def parse_bootstrap(bootstrap: str | Sequence[str]) -> list[tuple[str, int]]:
    """'h1:9092,h2:9092' (or a list of 'host:port') -> [(host, port), ...]."""
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    out: list[tuple[str, int]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise BrokerUnavailableError(f"bad bootstrap address {item!r}: expected host:port")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise BrokerUnavailableError(f"empty bootstrap list {bootstrap!r}")
    return out


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


class Connection:
    """One TCP connection to one broker; one request at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "ringleader",
        connect_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._correlation = 0
        self._versions: dict[int, tuple[int, int]] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _fail(self, what: str, err: BaseException | str) -> BrokerUnavailableError:
        self._drop()
        return BrokerUnavailableError(f"{self.address}: {what}: {err}")

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _ensure_connected(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        except OSError as e:
            raise BrokerUnavailableError(f"{self.address}: connect failed: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        if not self._versions:
            self._versions = self._negotiate(sock)
        return sock

    def _negotiate(self, sock: socket.socket) -> dict[int, tuple[int, int]]:
        deadline = time.monotonic() + self._connect_timeout
        req = ApiVersionsRequest(client_software_name="ringleader", client_software_version="1")
        resp = self._roundtrip(sock, req, ApiVersionsResponse, 3, deadline)
        if resp.error_code != 0:
            # Brokers answer an unsupported ApiVersions version with a v0 body listing theirs.
            resp = self._roundtrip(sock, ApiVersionsRequest(), ApiVersionsResponse, 0, deadline)
            if resp.error_code != 0:
                raise self._fail("ApiVersions", ErrorCode.of(resp.error_code).name)
        return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """The broker's (min, max) version per API key; connects if needed."""
        with self._lock:
            self._ensure_connected()
            return dict(self._versions)

    def version_for(self, request_cls: Any) -> int:
        key = int(request_cls.API_KEY)
        if key not in self._versions:
            raise CoordinatorError(
                request_cls.__name__, ErrorCode.UNSUPPORTED_VERSION, self.address
            )
        bmin, bmax = self._versions[key]
        version = min(bmax, int(request_cls.max_version), _CAPS.get(key, 0))
        if version < max(bmin, _FLOORS.get(key, 0)):
            raise CoordinatorError(
                request_cls.__name__,
                ErrorCode.UNSUPPORTED_VERSION,
                f"{self.address} supports v{bmin}-v{bmax}",
            )
        return version

    def _recv_exact(self, sock: socket.socket, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out waiting for the response")
            sock.settimeout(remaining)
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            buf += chunk
        return bytes(buf)

    def _roundtrip(
        self, sock: socket.socket, request: Any, response_cls: Any, version: int, deadline: float
    ) -> Any:
        self._correlation = (self._correlation + 1) % 2**31
        cid = self._correlation
        request.API_VERSION = version
        request.with_header(correlation_id=cid, client_id=self.client_id)
        data = request.encode(framed=True, header=True)
        name = type(request).__name__
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(data)
            (size,) = struct.unpack(">i", self._recv_exact(sock, 4, deadline))
            if not 0 < size <= _MAX_FRAME:
                raise ConnectionError(f"bad frame size {size}")
            payload = self._recv_exact(sock, size, deadline)
        except (OSError, ConnectionError, TimeoutError) as e:
            raise self._fail(f"{name} v{version}", e) from e
        try:
            resp = response_cls[version].decode(payload, header=True)
        except (ValueError, struct.error) as e:
            raise self._fail(f"{name} v{version}: undecodable response", e) from e
        if resp.header.correlation_id != cid:
            raise self._fail(name, f"correlation id {resp.header.correlation_id} != {cid}")
        return resp

    def request(self, request: Any, response_cls: Any, timeout: float) -> Any:
        """Send one request and wait for its response, at most `timeout` seconds in all."""
        return self.request_built(lambda _v: request, type(request), response_cls, timeout)[1]

    def request_built(
        self,
        build: Callable[[int], Any],
        request_cls: Any,
        response_cls: Any,
        timeout: float,
    ) -> tuple[int, Any]:
        """Like `request`, for requests whose shape depends on the negotiated version."""
        with self._lock:
            deadline = time.monotonic() + timeout
            sock = self._ensure_connected()
            version = self.version_for(request_cls)
            return version, self._roundtrip(sock, build(version), response_cls, version, deadline)

    def abort(self) -> None:
        """Unblock a request in flight from another thread; the connection is closed."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.abort()
        with self._lock:
            self._drop()


def find_coordinator(
    bootstrap: str | Sequence[str],
    group_id: str,
    *,
    timeout: float,
    client_id: str = "ringleader",
    retry_backoff: float = 0.2,
) -> CoordinatorAddress:
    """Ask the bootstrap brokers in turn which broker coordinates `group_id`.

    Retries while brokers answer COORDINATOR_NOT_AVAILABLE (e.g. the offsets topic is still
    being created) until `timeout`; raises BrokerUnavailableError listing every address tried.
    """
    addresses = parse_bootstrap(bootstrap)
    deadline = time.monotonic() + timeout
    tried: list[str] = []
    while True:
        for host, port in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn = Connection(host, port, client_id=client_id, connect_timeout=min(remaining, 5.0))
            try:
                found = _find_on(conn, group_id, remaining)
            except BrokerUnavailableError as e:
                tried.append(str(e))
                continue
            except CoordinatorError as e:
                tried.append(f"{conn.address}: {e}")
                continue
            finally:
                conn.close()
            return found
        if time.monotonic() + retry_backoff >= deadline:
            raise BrokerUnavailableError(
                f"no coordinator for group {group_id!r} within {timeout:.1f}s; tried "
                + "; ".join(tried[-2 * len(addresses) :] or [f"{h}:{p}" for h, p in addresses])
            )
        time.sleep(retry_backoff)


def _find_on(conn: Connection, group_id: str, timeout: float) -> CoordinatorAddress:
    def build(version: int) -> Any:
        if version >= 4:
            return FindCoordinatorRequest(key_type=0, coordinator_keys=[group_id])
        return FindCoordinatorRequest(key=group_id, key_type=0)

    version, resp = conn.request_built(
        build, FindCoordinatorRequest, FindCoordinatorResponse, timeout
    )
    if version >= 4:
        if not resp.coordinators:
            raise CoordinatorError("FindCoordinator", ErrorCode.COORDINATOR_NOT_AVAILABLE)
        c = resp.coordinators[0]
        code, node_id, host, port = c.error_code, c.node_id, c.host, c.port
    else:
        code, node_id, host, port = resp.error_code, resp.node_id, resp.host, resp.port
    if code != 0:
        raise CoordinatorError("FindCoordinator", ErrorCode.of(code), conn.address)
    return CoordinatorAddress(int(node_id), str(host), int(port))


class GroupClient:
    """The group requests of one member, on one connection to its group coordinator."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        group_id: str,
        *,
        client_id: str = "ringleader",
        connect_timeout: float = 5.0,
    ) -> None:
        self.bootstrap = bootstrap
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
            self.bootstrap, self.group_id, timeout=timeout, client_id=self.client_id
        )
        old = self._conn
        if old is None or (old.host, old.port) != (found.host, found.port):
            self._conn = Connection(
                found.host,
                found.port,
                client_id=self.client_id,
                connect_timeout=self.connect_timeout,
            )
            if old is not None:
                old.close()
        self.coordinator = found
        return found

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
        req = JoinGroupRequest(
            group_id=self.group_id,
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
        resp = conn.request(req, JoinGroupResponse, timeout)
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
        req = SyncGroupRequest(
            group_id=self.group_id,
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
        resp = conn.request(req, SyncGroupResponse, timeout)
        return SyncResult(ErrorCode.of(resp.error_code), bytes(resp.assignment or b""))

    def heartbeat(
        self, *, generation: int, member_id: str, group_instance_id: str | None, timeout: float
    ) -> ErrorCode:
        conn = self._connection()
        req = HeartbeatRequest(
            group_id=self.group_id,
            generation_id=generation,
            member_id=member_id,
            group_instance_id=group_instance_id,
        )
        resp = conn.request(req, HeartbeatResponse, timeout)
        return ErrorCode.of(resp.error_code)

    def leave_group(
        self, *, member_id: str, group_instance_id: str | None, timeout: float
    ) -> ErrorCode:
        conn = self._connection()

        def build(version: int) -> Any:
            if version >= 3:
                return LeaveGroupRequest(
                    group_id=self.group_id,
                    members=[
                        LeaveGroupRequest.MemberIdentity(
                            member_id=member_id, group_instance_id=group_instance_id, reason="close"
                        )
                    ],
                )
            return LeaveGroupRequest(group_id=self.group_id, member_id=member_id)

        version, resp = conn.request_built(build, LeaveGroupRequest, LeaveGroupResponse, timeout)
        code = ErrorCode.of(resp.error_code)
        if code == ErrorCode.NONE and version >= 3:
            for m in resp.members:
                if m.error_code != 0:
                    return ErrorCode.of(m.error_code)
        return code

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
        part = OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition
        req = OffsetCommitRequest(
            group_id=self.group_id,
            generation_id_or_member_epoch=generation,
            member_id=member_id,
            group_instance_id=group_instance_id,
            retention_time_ms=-1,
            topics=[
                OffsetCommitRequest.OffsetCommitRequestTopic(
                    name=topic,
                    partitions=[
                        part(
                            partition_index=p,
                            committed_offset=o,
                            committed_leader_epoch=-1,
                            commit_timestamp=-1,
                            committed_metadata=metadata,
                        )
                        for p, o in sorted(offsets.items())
                    ],
                )
            ],
        )
        resp = conn.request(req, OffsetCommitResponse, timeout)
        return {
            int(p.partition_index): ErrorCode.of(p.error_code)
            for t in resp.topics
            for p in t.partitions
        }

    def fetch_offsets(
        self, *, topic: str, partitions: Sequence[int], timeout: float
    ) -> dict[int, PartitionOffset]:
        """Committed offsets of `partitions` (-1 where none is committed)."""
        conn = self._connection()
        req = OffsetFetchRequest(
            group_id=self.group_id,
            topics=[
                OffsetFetchRequest.OffsetFetchRequestTopic(
                    name=topic, partition_indexes=list(partitions)
                )
            ],
            require_stable=False,
        )
        resp = conn.request(req, OffsetFetchResponse, timeout)
        top = ErrorCode.of(getattr(resp, "error_code", 0) or 0)
        if top != ErrorCode.NONE:
            raise CoordinatorError("OffsetFetch", top, conn.address)
        return {
            int(p.partition_index): PartitionOffset(
                int(p.committed_offset), p.metadata, ErrorCode.of(p.error_code)
            )
            for t in resp.topics
            for p in t.partitions
        }

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
