"""One blocking TCP connection to one broker, and finding a group's coordinator.

Frames kafka-python's public `kafka.protocol` request objects on a socket (it never uses
kafka-python's client or coordinator: its join loop can spin forever against Tansu). One
request in flight at a time (a lock), every socket operation bounded by a timeout. Versions are
the highest both sides support (ApiVersions), capped at what `coordinator.groupapi` was tested
with.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kafka.protocol.metadata import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)

from ringleader.coordinator import groupapi as api
from ringleader.coordinator.errors import BrokerUnavailableError, CoordinatorError, ErrorCode
from ringleader.coordinator.groupapi import CoordinatorAddress

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
        version = min(bmax, int(request_cls.max_version), api.CAPS.get(key, 0))
        if version < max(bmin, api.FLOORS.get(key, 0)):
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
    version, resp = conn.request_built(
        lambda v: api.find_coordinator_request(v, group_id),
        FindCoordinatorRequest,
        FindCoordinatorResponse,
        timeout,
    )
    return api.decode_find_coordinator(version, resp, conn.address)
