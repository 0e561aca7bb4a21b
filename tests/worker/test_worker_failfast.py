"""Workers fail fast on what they cannot serve: configuration errors exit 2 in one line, an
unreachable Redis at start means the worker never joins (exit 3), and a Redis lost while
holding partitions makes the worker leave the group until Redis answers again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringleader.chaos.proxy import TcpProxy
from ringleader.client import Client, TaskSpec
from ringleader.groupview import last_committed, worker_id_from_member
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings
from tests.registry.registry_testkit import free_port
from tests.worker import procs

RINGLEADER = str(Path(sys.executable).with_name("ringleader"))
PARTITIONS = 4

BAD_VALUES = [
    ("RINGLEADER_REDIS", "redis://127.0.0.1:notaport/0"),
    ("RINGLEADER_PARTITIONS", "twelve"),
    ("RINGLEADER_SSL_CHECK_HOSTNAME", "maybe"),
    ("RINGLEADER_BOOTSTRAP", "127.0.0.1:notaport"),
]


def _run(cmd: list[str], var: str, value: str) -> subprocess.CompletedProcess[str]:
    env = procs.worker_env("failfast", "127.0.0.1:9", "redis://127.0.0.1:9/0")
    env[var] = value
    return subprocess.run(
        cmd, env=env, cwd=procs.ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def _one_line_naming(cp: subprocess.CompletedProcess[str], var: str) -> None:
    lines = [line for line in cp.stderr.splitlines() if line.strip()]
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert len(lines) == 1, cp.stderr
    assert var in lines[0] and "Traceback" not in cp.stderr, cp.stderr


@pytest.mark.parametrize(("var", "value"), [*BAD_VALUES, ("RINGLEADER_WORKER_EVENTS", "maybe")])
def test_worker_config_errors_exit_2_in_one_line(var: str, value: str) -> None:
    for cmd in (
        [RINGLEADER, "worker", procs.COUNTING_APP],
        [sys.executable, "-m", "ringleader.worker.run", procs.COUNTING_APP],
    ):
        _one_line_naming(_run(cmd, var, value), var)


@pytest.mark.parametrize(("var", "value"), BAD_VALUES)
def test_submit_config_errors_exit_2_in_one_line(var: str, value: str) -> None:
    _one_line_naming(_run([RINGLEADER, "submit", "noop"], var, value), var)


def test_bad_worker_number_and_registry_url_exit_2() -> None:
    cp = _run([RINGLEADER, "worker", procs.COUNTING_APP], "RINGLEADER_WORKER_REDIS_GRACE", "soon")
    _one_line_naming(cp, "RINGLEADER_WORKER_REDIS_GRACE")
    cp = _run([RINGLEADER, "registry", "ls"], "RINGLEADER_REDIS", "redis://h:6379/notadb")
    _one_line_naming(cp, "RINGLEADER_REDIS")


def _owners(settings: AppSettings) -> dict[str, list[int]]:
    """Worker id -> partitions in the last committed generation."""
    a = last_committed(settings, 10.0)
    if a is None:
        return {}
    return {str(worker_id_from_member(m)): sorted(p) for m, p in a.owners.items() if p}


def _complete(redis_url: str, ns: str, ids: list[str], timeout: float) -> None:
    procs.wait_until(
        lambda: procs.count_completed(redis_url, ns, ids) == len(ids),
        timeout,
        f"all {len(ids)} tasks to complete",
    )


@pytest.mark.broker
@pytest.mark.redis
def test_unreachable_redis_at_start_never_joins(
    broker: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    ns = unique_name
    settings = AppSettings(namespace=ns, bootstrap=broker, redis=redis_url, partitions=PARTITIONS)
    ensure_topics(settings)
    workers = procs.Workers(
        procs.worker_env(ns, broker, redis_url, partitions=PARTITIONS), tmp_path
    )
    dead = f"redis://127.0.0.1:{free_port()}/0"
    try:
        good = workers.start("good")
        bad = workers.start(
            "bad", extra_env={"RINGLEADER_REDIS": dead, "RINGLEADER_WORKER_PREFLIGHT_TIMEOUT": "4"}
        )
        with Client(settings=settings) as client:
            ids = [h.id for h in client.submit_many([TaskSpec("count", kwargs={"n": 1})] * 60)]
        _complete(redis_url, ns, ids, 120)
        assert bad.wait(60) == 3
        text = bad.log_text()
        reason = [line for line in text.splitlines() if line.startswith("ringleader worker:")]
        assert len(reason) == 1 and "Redis at" in reason[0] and "does not answer" in reason[0]
        assert "preflight attempt" in text  # the retries were logged
        assert "joined generation" not in text and "applied: partitions" not in text
        assert _owners(settings) == {"good": list(range(PARTITIONS))}
        assert good.alive()
    except BaseException:
        print(workers.dump_logs())
        raise
    finally:
        workers.close()


# Kafka only: what this checks lives in Redis and the worker, not in the broker's group
# coordination (the Tansu twin added ~30 s to CI; chaos rows cover Tansu's failover).
@pytest.mark.parametrize("broker", ["kafka"], indirect=True)
@pytest.mark.broker
@pytest.mark.redis
@pytest.mark.slow
def test_worker_leaves_while_redis_is_lost_and_rejoins(
    broker: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    ns = unique_name
    grace, drain = 2.0, 3.0
    settings = AppSettings(namespace=ns, bootstrap=broker, redis=redis_url, partitions=PARTITIONS)
    ensure_topics(settings)
    env = procs.worker_env(ns, broker, redis_url, partitions=PARTITIONS)
    env["RINGLEADER_WORKER_REDIS_GRACE"] = str(grace)
    env["RINGLEADER_WORKER_DRAIN_TIMEOUT"] = str(drain)
    workers = procs.Workers(env, tmp_path)
    proxy, via_proxy = TcpProxy.to_url(redis_url)
    try:
        a = workers.start("a", extra_env={"RINGLEADER_REDIS": via_proxy})
        workers.start("b")
        procs.wait_until(lambda: set(_owners(settings)) == {"a", "b"}, 90, "a and b to share")
        with Client(settings=settings) as client:
            first = [h.id for h in client.submit_many([TaskSpec("count", kwargs={"n": 1})] * 40)]
            _complete(redis_url, ns, first, 60)

            proxy.cut()
            cut_at = time.monotonic()
            procs.wait_until(
                lambda: _owners(settings) == {"b": list(range(PARTITIONS))},
                60,
                "b to own every partition",
            )
            moved_after = time.monotonic() - cut_at
            # Leave after the grace, drain within the drain timeout, then one rebalance.
            assert moved_after < grace + drain + 20, moved_after
            during = [h.id for h in client.submit_many([TaskSpec("count", kwargs={"n": 2})] * 40)]
            _complete(redis_url, ns, during, 60)  # b runs what would have been a's
            assert a.alive()

            proxy.restore()
            procs.wait_until(lambda: "a" in _owners(settings), 90, "a to own partitions again")
            after = [h.id for h in client.submit_many([TaskSpec("count", kwargs={"n": 3})] * 40)]
            _complete(redis_url, ns, after, 60)
        text = a.log_text()
        assert "leaving the group until it answers" in text and "unreachable for" in text
        assert "answers again" in text and "rejoining the group" in text
    except BaseException:
        print(workers.dump_logs())
        raise
    finally:
        workers.close()
        proxy.close()
