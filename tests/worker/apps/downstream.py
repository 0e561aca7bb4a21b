"""Test app: a task that calls the registered service "echo" over HTTP through
`app.downstream`, with fast breakers so an outage opens them in a few calls.

RINGLEADER_TEST_REGISTRY_PREFIX keeps each test's registry (and shared breaker state) apart.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from registry import BreakerSettings, DownstreamError, Instance, RetryPolicy
from worker.app import App

app = App()
fast = BreakerSettings(fail_max=3, reset_timeout=1.0)
app.configure_downstream(
    service_breaker=fast,
    instance_breaker=fast,
    retry=RetryPolicy(attempts=2, initial=0.01),
    registry_prefix=os.environ["RINGLEADER_TEST_REGISTRY_PREFIX"],
)


def http_get(path: str) -> str:
    def call(inst: Instance) -> str:
        try:
            with urllib.request.urlopen(inst.address + path, timeout=5) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as e:
            raise DownstreamError(f"HTTP {e.code}", retriable=e.code >= 500) from e

    return call


@app.task(name="fetch", retries=1)
def fetch(path: str = "/") -> str:
    return app.downstream.call("echo", http_get(path))
