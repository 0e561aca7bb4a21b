"""A loopback TCP forwarder a test or the chaos runner can cut and restore: fault injection
between a process and a real server (e.g. one worker's Redis, or its brokers), leaving the
server and every other client alone.

`cut()` resets every forwarded connection and refuses new ones (accepted, then closed at
once, as a dead network path looks to a client that reconnects); `restore()` forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_CHUNK = 65536


class TcpProxy:
    """Listens on 127.0.0.1:<port> and forwards each connection to `target` (host, port)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tcpproxy", daemon=True)
        self._thread.start()

    @classmethod
    def to_url(cls, redis_url: str) -> tuple[TcpProxy, str]:
        """A proxy to the Redis at `redis_url` and the URL that goes through it."""
        from urllib.parse import urlsplit

        parts = urlsplit(redis_url)
        proxy = cls((parts.hostname or "127.0.0.1", parts.port or 6379))
        return proxy, parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            conns, self._open = self._open, set()
        for s in conns:
            _kill(s)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                cut = self._cut
            if cut:
                _kill(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _kill(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _kill(src)
            _kill(dst)


def _kill(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
