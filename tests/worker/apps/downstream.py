"""Test app: a task that calls the registered service "echo" over HTTP through
`app.downstream`, with fast breakers so an outage opens them in a few calls.

RINGLEADER_TEST_REGISTRY_PREFIX keeps each test's registry (and shared breaker state) apart.
"""

from __future__ import annotations

import os

from ringleader.chaos.stub import http_get
from ringleader.registry import Backoff, BreakerSettings, RetryPolicy
from ringleader.worker.app import App

app = App()
fast = BreakerSettings(fail_max=3, reset_timeout=1.0)
app.configure_downstream(
    service_breaker=fast,
    instance_breaker=fast,
    retry=RetryPolicy(max_retries=1, backoff=Backoff(initial=0.01, jitter=0.01)),
    registry_prefix=os.environ["RINGLEADER_TEST_REGISTRY_PREFIX"],
)


@app.task(name="fetch", retries=1)
def fetch(path: str = "/") -> str:
    return app.downstream.call("echo", http_get(path))
