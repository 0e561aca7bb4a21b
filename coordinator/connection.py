"""One connection to one broker, and finding a group's coordinator.

The connection layer is kafka-python's `kafka.net` (its public `KafkaConnectionManager` and
`NetworkSelector`): TLS, the SASL handshake and authentication (PLAIN, SCRAM-SHA-256/512) and
ApiVersions negotiation are its, with the settings of `ringleader.security.KafkaSecurity`.
ringleader never uses kafka-python's client or coordinator (their join loop can spin forever
against Tansu): it sends its own group requests (`coordinator.groupapi`) on this connection,
one at a time, each bounded by a timeout, driving the selector on the calling thread.
Versions are the highest both sides support, capped at what `coordinator.groupapi` was tested
with.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import kafka.errors as kerrors
from kafka.net import KafkaConnectionManager, NetworkSelector
from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse

from ringleader.coordinator import groupapi as api
from ringleader.coordinator.errors import BrokerUnavailableError, CoordinatorError, ErrorCode
from ringleader.coordinator.groupapi import CoordinatorAddress
from ringleader.errors import BrokerAuthError
from ringleader.security import KafkaSecurity, tls_refusal

_MAX_FRAME = 64 * 1024 * 1024
_POLL_SLICE = 0.1
_PLAINTEXT = KafkaSecurity()
# kafka.net logs every failed connect at ERROR and each connection at INFO; ringleader reports
# failures itself, once, with the broker, protocol and user named.
logging.getLogger("kafka.net").setLevel(logging.CRITICAL)
logging.getLogger("kafka.cluster").setLevel(logging.WARNING)
# kafka.protocol's parser logs every request and its bytes at DEBUG: with SASL PLAIN that
# would be the password, whatever level the application asks for. A filter too, since a
# logging.config.dictConfig resets the level of loggers it names a parent of.
logging.getLogger("kafka.protocol").setLevel(logging.WARNING)
logging.getLogger("kafka.protocol.parser").addFilter(lambda r: r.levelno >= logging.WARNING)
_AUTH_ERRORS = (
    kerrors.SaslAuthenticationFailedError,
    kerrors.UnsupportedSaslMechanismError,
    kerrors.IllegalSaslStateError,
    kerrors.AuthorizationError,
)


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
    """One connection to one broker (TLS and SASL as `security` says); one request at a
    time. A failed request drops the connection; the next request opens a new one."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "ringleader",
        connect_timeout: float = 5.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.security = security or _PLAINTEXT
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._net: NetworkSelector | None = None
        self._manager: KafkaConnectionManager | None = None
        self._node: str | None = None
        self._aborting = False
        self._versions: dict[int, tuple[int, int]] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _fail(self, what: str, err: BaseException | str) -> BrokerUnavailableError:
        self._drop()
        return BrokerUnavailableError(f"{self.address}: {what}: {err}")

    def _drop(self) -> None:
        manager, net = self._manager, self._net
        self._manager = self._net = self._node = None
        if manager is not None:
            manager.close()
        if net is not None:
            net.close()

    def _ensure_connected(self, deadline: float) -> None:
        if self._manager is not None:
            return
        net = NetworkSelector()
        try:
            manager = self._manager_on(net)
        except Exception:
            net.close()
            raise
        self._net, self._manager = net, manager
        node = str(manager.cluster.bootstrap_brokers()[0].node_id)
        self._node = node
        timeout = max(0.001, min(self._connect_timeout, deadline - time.monotonic()))
        try:
            conn = manager.get_connection(
                node, timeout_ms=timeout * 1000, refresh_metadata_on_err=False
            )
        except kerrors.KafkaError as e:
            raise self._fail("connect failed", e) from e
        self._wait(conn.init_future, deadline)
        if not conn.init_future.succeeded():
            raise self._connect_error(conn.init_future.exception)
        versions = conn.broker_version_data.api_versions if conn.broker_version_data else None
        if not versions:
            raise self._fail("ApiVersions", "the broker sent no API versions")
        self._versions = dict(versions)

    def _manager_on(self, net: NetworkSelector) -> KafkaConnectionManager:
        return KafkaConnectionManager(
            net,
            bootstrap_servers=self.address,
            client_id=self.client_id,
            client_software_name="ringleader",
            client_software_version="1",
            receive_message_max_bytes=_MAX_FRAME,
            request_timeout_ms=int(self._connect_timeout * 1000),
            socket_connection_setup_timeout_ms=int(self._connect_timeout * 1000),
            **self.security.kafka_python_config(),
        )

    def _connect_error(self, exc: BaseException | None) -> BrokerUnavailableError | BrokerAuthError:
        """The error a failed connect raises: BrokerAuthError where retrying cannot help."""
        self._drop()
        sec = self.security.describe()
        if isinstance(exc, _AUTH_ERRORS):
            return BrokerAuthError(f"{self.address}: authentication failed ({sec}): {exc}")
        cause = _root(exc)
        text = f"{exc} {cause}"
        if isinstance(cause, ssl.SSLCertVerificationError) or tls_refusal(text):
            # kafka.net passes some TLS alerts on as text only (a KafkaConnectionError).
            return BrokerAuthError(f"{self.address}: TLS handshake failed ({sec}): {cause}")
        if isinstance(cause, ssl.SSLError) or "[SSL" in text:
            # An EOF or reset in the handshake is also what a restarting broker does: retry.
            return BrokerUnavailableError(f"{self.address}: connect failed ({sec}): {cause}")
        if exc is None:
            return BrokerUnavailableError(f"{self.address}: connect timed out ({sec})")
        return BrokerUnavailableError(f"{self.address}: connect failed ({sec}): {exc}")

    def _wait(self, future: Any, deadline: float) -> None:
        """Drive the selector on this thread until `future` is done, or the deadline."""
        net = self._net
        assert net is not None
        while not future.is_done and not self._aborting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Slices, so an abort is seen even if closing the connection is deferred.
            net.poll(timeout_ms=min(remaining, _POLL_SLICE) * 1000, future=future)

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """The broker's (min, max) version per API key; connects if needed."""
        with self._lock:
            self._check_aborting()
            self._ensure_connected(time.monotonic() + self._connect_timeout)
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

    def _check_aborting(self) -> None:
        if self._aborting:
            self._drop()
            raise BrokerUnavailableError(f"{self.address}: connection aborted")

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
        del response_cls  # kafka.net decodes the response for the request it sent
        with self._lock:
            deadline = time.monotonic() + timeout
            self._check_aborting()
            self._ensure_connected(deadline)
            version = self.version_for(request_cls)
            request = build(version)
            request.API_VERSION = version
            name = f"{type(request).__name__} v{version}"
            manager = self._manager
            assert manager is not None
            remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
            future = manager.send(request, node_id=self._node, request_timeout_ms=remaining_ms)
            self._wait(future, deadline)
            self._check_aborting()
            if not future.is_done:
                raise self._fail(name, "timed out waiting for the response")
            if future.failed():
                raise self._fail(name, future.exception or "failed")
            return version, future.value

    def abort(self) -> None:
        """Unblock a request in flight from another thread; the connection is closed."""
        self._aborting = True
        net, manager = self._net, self._manager
        if net is not None and manager is not None:
            # On the selector's own thread: closing fails the request in flight at once.
            with contextlib.suppress(RuntimeError):  # the selector was closed meanwhile
                net.call_soon_threadsafe(manager.close)

    def close(self) -> None:
        self.abort()
        with self._lock:
            self._drop()


def _root(exc: BaseException | None) -> BaseException | None:
    """The innermost cause (kafka.net wraps a TLS error in KafkaConnectionError)."""
    seen = 0
    while exc is not None and seen < 10:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc, seen = nxt, seen + 1
    return exc


def find_coordinator(
    bootstrap: str | Sequence[str],
    group_id: str,
    *,
    timeout: float,
    client_id: str = "ringleader",
    retry_backoff: float = 0.2,
    security: KafkaSecurity | None = None,
) -> CoordinatorAddress:
    """Ask the bootstrap brokers in turn which broker coordinates `group_id`.

    Retries while brokers answer COORDINATOR_NOT_AVAILABLE (e.g. the offsets topic is still
    being created) until `timeout`; raises BrokerUnavailableError listing every address tried.
    """
    addresses = parse_bootstrap(bootstrap)
    deadline = time.monotonic() + timeout
    tried: list[str] = []
    refused: BrokerAuthError | None = None
    while True:
        for host, port in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn = Connection(
                host,
                port,
                client_id=client_id,
                connect_timeout=min(remaining, 5.0),
                security=security,
            )
            try:
                found = _find_on(conn, group_id, remaining)
            except BrokerUnavailableError as e:
                tried.append(str(e))
                continue
            except BrokerAuthError as e:  # another bootstrap broker may still let us in
                refused = e
                tried.append(str(e))
                continue
            except CoordinatorError as e:
                tried.append(f"{conn.address}: {e}")
                continue
            finally:
                conn.close()
            return found
        if refused is not None and len(tried) >= len(addresses):
            raise refused
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
