"""The whole dispatch on a secured cluster: Apache Kafka with SASL_SSL (SCRAM-SHA-512), SSL
with a client certificate and SASL_PLAINTEXT (PLAIN), and Redis over TLS as an ACL user that
may run only ringleader's commands on ringleader's keys (`ringleader local up --secure`).

Worker processes, the Client and the CLI get the settings the way users pass them: the
`KafkaSecurity` fields as RINGLEADER_<FIELD> variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ringleader.client import Client, TaskSpec
from ringleader.security import KafkaSecurity
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.results import Status
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 6


def secure_settings(
    stack: Mapping[str, Any], namespace: str, listener: str | None = None
) -> AppSettings:
    """App settings for the stack's main listener (SASL_SSL) or one of its others."""
    conf = stack if listener is None else stack["listeners"][listener]
    return AppSettings(
        namespace=namespace,
        bootstrap=conf["bootstrap"],
        redis=stack["redis"],
        partitions=PARTITIONS,
        security=KafkaSecurity.from_mapping(conf),
    )


def cli(settings: AppSettings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGLEADER_")}
    env.update(settings.to_env())
    return subprocess.run(
        [sys.executable, "-m", "ringleader.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def admin_redis(secure_stack: Mapping[str, Any]) -> str:
    return str(secure_stack["redis_admin"])


def group(
    settings: AppSettings, tmp_path: Path, admin_redis: str, count: int, concurrency: int = 4
) -> Iterator[procs.Workers]:
    """`count` worker processes on `settings`; the counting app keeps its books in Redis as
    the admin user (the ringleader user may touch only ringleader's keys)."""
    ensure_topics(settings)
    # A record window of the concurrency: a SIGKILL can then repeat at most that many tasks
    # (the default window, 64, allows up to 64 finished-but-unrecorded ones on a slow flush).
    extra = {
        "RINGLEADER_TEST_APP_REDIS": admin_redis,
        "RINGLEADER_WORKER_RECORD_WINDOW": str(concurrency),
    }
    with procs.workers_of(settings, tmp_path, extra=extra) as ws:
        for i in range(count):
            ws.start(f"w{i}", concurrency=concurrency)
        yield ws


def test_dispatch_on_sasl_ssl_scram_and_tls_redis_acl(
    secure_stack: Mapping[str, Any], tmp_path: Path, unique_name: str, admin_redis: str
) -> None:
    s = secure_settings(secure_stack, unique_name)
    assert s.security.security_protocol == "SASL_SSL"
    assert s.security.sasl_mechanism == "SCRAM-SHA-512"
    with (
        contextlib.contextmanager(group)(s, tmp_path, admin_redis, 3) as ws,
        Client(settings=s) as client,
    ):
        assert client.submit("count", kwargs={"n": -1}).result(timeout=120) == -1  # group up
        specs = [TaskSpec("count", kwargs={"n": i, "sleep": 0.02}) for i in range(1000)]
        handles = client.submit_many(specs)
        procs.wait_until(
            lambda: len(procs.executions(admin_redis, unique_name)) >= 200, 120, "200 started"
        )
        victim = ws.procs[0]
        victim.kill()  # SIGKILL: its partitions move to the two that stay
        assert [h.result(timeout=240) for h in handles] == list(range(1000))
        execs = procs.executions(admin_redis, unique_name)
        ran = [execs.get(h.id, 0) for h in handles]
        assert min(ran) >= 1
        # Only what the SIGKILL cut off can run again: at most the victim's concurrency.
        assert sum(1 for n in ran if n > 1) <= 4, [n for n in ran if n > 1]
        assert all(h.status() is Status.SUCCEEDED for h in handles[:50])
        pids = {line.split()[1] for line in procs.run_log(admin_redis, unique_name)}
        assert len(pids) == 3  # all three ran tasks, the victim only before it died

        # A batch commits through the 2PC log on the secured cluster, then runs.
        batch = client.submit_batch([TaskSpec("count", kwargs={"n": 5000 + i}) for i in range(5)])
        assert batch.committed
        assert [h.result(timeout=120) for h in batch] == [5000 + i for i in range(5)]

        # The CLI: status --json, submit --wait, tail.
        st = cli(s, "status", "--json")
        assert st.returncode == 0, st.stderr
        report = json.loads(st.stdout)
        text = json.dumps(report)
        assert str(secure_stack["sasl_password"]) not in text
        assert len(report["members"]) == 2, report
        sub = cli(s, "submit", "count", "--kwargs", '{"n": 7}', "--wait", "--timeout", "60")
        assert sub.returncode == 0, sub.stderr
        assert json.loads(sub.stdout.strip().splitlines()[-1]) == 7
        tail = cli(s, "tail", "--from-beginning", "--json", "--max", "3", "--idle", "20")
        assert tail.returncode == 0, tail.stderr
        assert len(tail.stdout.strip().splitlines()) == 3
        for out in (st.stderr, sub.stderr, tail.stderr, ws.dump_logs(tail=400)):
            assert str(secure_stack["sasl_password"]) not in out
    assert not victim.alive()


@pytest.mark.parametrize("listener", ["SSL", "SASL_PLAINTEXT"])
def test_dispatch_on_ssl_client_cert_and_sasl_plaintext_plain(
    secure_stack: Mapping[str, Any],
    tmp_path: Path,
    unique_name: str,
    admin_redis: str,
    listener: str,
) -> None:
    s = secure_settings(secure_stack, unique_name, listener)
    assert s.security.security_protocol == listener
    with (
        contextlib.contextmanager(group)(s, tmp_path, admin_redis, 2, concurrency=2),
        Client(settings=s) as client,
    ):
        assert client.submit("count", kwargs={"n": -1}).result(timeout=120) == -1
        handles = client.submit_many([TaskSpec("count", kwargs={"n": i}) for i in range(200)])
        assert [h.result(timeout=120) for h in handles] == list(range(200))
        execs = procs.executions(admin_redis, unique_name)
        assert all(execs.get(h.id) == 1 for h in handles)
        st = cli(s, "status", "--json")
        assert st.returncode == 0, st.stderr
        assert len(json.loads(st.stdout)["members"]) == 2
