"""Shared fixtures: real brokers and Redis, started once per session.

Environment overrides (for development against services you already run):
RINGLEADER_TEST_KAFKA, RINGLEADER_TEST_TANSU, RINGLEADER_TEST_REDIS.
Without them the services are started by `ringleader.local` into a temp dir.
Under CI=true a service that cannot start fails the test; it is never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest
import redis

from ringleader.local import services

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(what: str, err: BaseException) -> NoReturn:
    if CI:
        pytest.fail(f"{what} could not start under CI: {err}")
    pytest.skip(f"{what} unavailable: {err}")


@contextmanager
def _stack(
    factory: pytest.TempPathFactory, what: str, **services_up: Any
) -> Iterator[services.Stack]:
    """Start a stack for the session; under CI a failed start fails, elsewhere it skips."""
    d = factory.mktemp(what.split(maxsplit=1)[0].lower())
    try:
        stack = services.up(d, **services_up)
    except services.ServiceStartError as e:
        _unavailable(what, e)
    try:
        yield stack
    finally:
        services.down(d)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if env := os.environ.get("RINGLEADER_TEST_KAFKA"):
        yield env
        return
    with _stack(tmp_path_factory, "Apache Kafka", kafka_nodes=1) as stack:
        yield str(stack.bootstrap)


@pytest.fixture(scope="session")
def tansu_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if env := os.environ.get("RINGLEADER_TEST_TANSU"):
        yield env
        return
    with _stack(tmp_path_factory, "Tansu", tansu=True) as stack:
        yield str(stack.bootstrap)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Stack]:
    """A three-node KRaft cluster; yields the `services.Stack` (`.nodes` carry pids)."""
    with _stack(tmp_path_factory, "Apache Kafka three-node cluster", kafka_nodes=3) as stack:
        yield stack


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if env := os.environ.get("RINGLEADER_TEST_REDIS"):
        yield env
        return
    with _stack(tmp_path_factory, "Redis", redis=True) as stack:
        yield str(stack.redis)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    c: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis[bytes]) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(params=["kafka", "tansu"])
def broker(request: pytest.FixtureRequest) -> str:
    """Bootstrap address; every test using it runs on Apache Kafka and on Tansu."""
    name = "kafka_bootstrap" if request.param == "kafka" else "tansu_bootstrap"
    return str(request.getfixturevalue(name))


@pytest.fixture
def broker_kind(broker: str, request: pytest.FixtureRequest) -> str:
    """'kafka' or 'tansu', matching the `broker` fixture's parameter."""
    return str(request.node.callspec.params["broker"])


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/group/namespace name unique to this test invocation."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Apache Kafka and Redis with TLS and authentication, as `ringleader local up --kafka
    --redis --secure` starts them: yields what its `--json` prints (the main listener's
    KafkaSecurity fields, `listeners`, `redis`, `redis_admin`, `tls`) plus `dir`.

    RINGLEADER_TEST_SECURE_DIR: the --dir of such a stack you already run (it is left running).
    """
    from pathlib import Path

    from ringleader.local import secure

    if env := os.environ.get("RINGLEADER_TEST_SECURE_DIR"):
        d = Path(env).resolve()
        conn = secure.connection(d)
        if conn is None:
            pytest.fail(f"RINGLEADER_TEST_SECURE_DIR={env}: no secured stack runs there")
        yield {**conn, "dir": str(d)}
        return
    with _stack(
        tmp_path_factory, "Secured Kafka and Redis", kafka_nodes=1, redis=True, secure=True
    ) as stack:
        yield {**(secure.connection(Path(stack.dir)) or {}), "dir": stack.dir}
