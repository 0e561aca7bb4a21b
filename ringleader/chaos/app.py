"""The app the chaos runner's workers run (`ringleader.chaos.app:app`).

Configured from RINGLEADER_* like any app, plus:
- RINGLEADER_CHAOS_LEDGER: the bookkeeping Redis the `ledger` task writes its steps to
  (default: the app's Redis). See `ringleader.chaos.ledger`.
- RINGLEADER_CHAOS_REGISTRY: a registry prefix; set, each run ends with one call to the
  registered service `chaos-echo` through `app.downstream`, behind fast breakers.
- RINGLEADER_CHAOS_FAULT=drop-completions: a broken build that records no completion while
  telling the worker it did (the runner must catch it: the suite's own test).

The leader-dies-before-commit fault is armed per scenario through the ledger's flag key
`die-before-commit`: the next leader to publish an assignment writes its parts, notes the
torn generation, and SIGKILLs itself before the commit record.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Sequence

import redis

from ringleader.chaos.ledger import DIE_BEFORE_COMMIT, DONE, SERVICE, flag_key, steps_key, torn_key
from ringleader.chaos.stub import http_get
from ringleader.coordinator.assignment import Assignment, AssignmentLog, AssignmentPointer
from ringleader.coordinator.twophase import digest
from ringleader.registry import Backoff, BreakerSettings, RetryPolicy
from ringleader.worker.app import App
from ringleader.worker.records import CompletionWrite, RetryWrite, RunOf
from ringleader.worker.results import ResultStore, Status
from ringleader.worker.tasks import TaskContext

app = App()
_ns = app.namespace
_ledger: redis.Redis[bytes] = redis.Redis.from_url(
    os.environ.get("RINGLEADER_CHAOS_LEDGER") or app.settings.redis
)
_PID = os.getpid()
_registry = os.environ.get("RINGLEADER_CHAOS_REGISTRY")
if _registry:
    fast = BreakerSettings(fail_max=3, reset_timeout=1.0)
    app.configure_downstream(
        service_breaker=fast,
        instance_breaker=fast,
        retry=RetryPolicy(max_retries=1, backoff=Backoff(initial=0.01, jitter=0.01)),
        registry_prefix=_registry,
    )


@app.task(name="ledger", bind=True, retries=3)
def ledger(ctx: TaskContext, steps: int = 4, step_s: float = 0.05) -> int:
    """A long task in `steps` steps: each checks the claim first, then leaves its mark."""
    run_id = f"{_PID}:{ctx.attempt}:{uuid.uuid4().hex[:6]}"
    key = steps_key(_ns)
    for step in range(steps):
        ctx.checkpoint()  # a paused or cut-off run stops here instead of working on
        _ledger.rpush(key, f"{ctx.task_id} {run_id} {step} {time.time():.6f}")
        time.sleep(step_s)
    if _registry:
        app.downstream.call(SERVICE, http_get("/"))
    ctx.checkpoint()
    _ledger.rpush(key, f"{ctx.task_id} {run_id} {DONE} {time.time():.6f}")
    return steps


_publish = AssignmentLog.publish_assignment


def _publish_or_die(self: AssignmentLog, a: Assignment, timeout: float) -> AssignmentPointer:
    if _ledger.getdel(flag_key(_ns, DIE_BEFORE_COMMIT)) is not None:
        parts = a.encode_parts()
        self.publish_parts_only(a, timeout)
        # Named by generation and digest: a broker may hand out the generation number again.
        _ledger.rpush(torn_key(_ns), f"{a.generation} {digest(parts).hex()}")
        os.kill(_PID, signal.SIGKILL)
    return _publish(self, a, timeout)


AssignmentLog.publish_assignment = _publish_or_die  # type: ignore[method-assign]

if os.environ.get("RINGLEADER_CHAOS_FAULT") == "drop-completions":
    _write = ResultStore.write

    def _write_nothing(
        self: ResultStore,
        statuses: Sequence[tuple[str, Status]],
        writes: Sequence[CompletionWrite],
        ttl: float,
        *,
        retries: Sequence[RetryWrite] = (),
        run: RunOf | None = None,
    ) -> tuple[list[bool], list[bool], list[bool]]:
        done, _, parked = _write(self, statuses, (), ttl, retries=retries, run=run)
        return done, [True] * len(writes), parked

    ResultStore.write = _write_nothing  # type: ignore[method-assign]
