"""A real local HTTP downstream (tests and the chaos runner): answers 200 "ok", or 503
"down" while `failing`; `/slow` takes 0.5 s. `http_get(path)` is the downstream call tasks
make to it."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ringleader.registry.downstream import DownstreamError
from ringleader.registry.model import Instance


class FlakyHTTP(ThreadingHTTPServer):
    request_queue_size = 64
    daemon_threads = True

    def __init__(self, failing: bool = False, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.failing = failing
        self.hits = 0
        self.failed_hits = 0
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FlakyHTTP

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits += 1
            failing = srv.failing
            srv.failed_hits += failing
        if self.path == "/slow":
            time.sleep(0.5)
        body = b"down" if failing else b"ok"
        self.send_response(503 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(failing: bool = False, host: str = "127.0.0.1") -> Iterator[FlakyHTTP]:
    """Serve on a free port of `host` (loopback unless told) in a thread; shut down on exit."""
    srv = FlakyHTTP(failing, host)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


def http_get(path: str) -> Callable[[Instance], str]:
    """GET `path` on the instance; HTTP 5xx is a retriable DownstreamError, 4xx is not."""

    def call(inst: Instance) -> str:
        try:
            with urllib.request.urlopen(inst.address + path, timeout=5) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as e:
            raise DownstreamError(f"HTTP {e.code}", retriable=e.code >= 500) from e

    return call
