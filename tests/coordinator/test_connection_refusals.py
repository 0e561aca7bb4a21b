"""Refusal or absence, as the connection tells them apart (no broker needed): a TLS peer that
hangs up mid-handshake is a server going away (retried), a certificate or protocol error is
a refusal (not retried), so a broker restart never stops a worker for good."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ringleader.coordinator.connection import Connection
from ringleader.errors import BrokerAuthError, BrokerUnavailableError
from ringleader.security import KafkaSecurity, tls_refusal


@pytest.fixture
def hang_up_port() -> Iterator[int]:
    """A loopback port that accepts each connection and closes it at once."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def test_a_tls_hang_up_is_absence_not_refusal(hang_up_port: int) -> None:
    sec = KafkaSecurity("SSL", ssl_cafile=__file__)
    conn = Connection("127.0.0.1", hang_up_port, connect_timeout=2.0, security=sec)
    with pytest.raises(BrokerUnavailableError) as err:
        conn.api_versions()
    assert not isinstance(err.value, BrokerAuthError)
    conn.close()


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", True),
        ("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate", True),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", True),
        ("[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol", False),
        ("[Errno 104] Connection reset by peer", False),
    ],
)
def test_which_tls_errors_are_refusals(text: str, refused: bool) -> None:
    assert tls_refusal(text) is refused
