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

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(what: str, err: BaseException) -> None:
    if CI:
        pytest.fail(f"{what} could not start under CI: {err}")
    pytest.skip(f"{what} unavailable: {err}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = os.environ.get("RINGLEADER_TEST_KAFKA")
    if env:
        yield env
        return
    from ringleader.local import services

    d = tmp_path_factory.mktemp("kafka")
    try:
        stack = services.up(d, kafka_nodes=1)
    except services.ServiceStartError as e:
        _unavailable("Apache Kafka", e)
    try:
        yield stack.bootstrap
    finally:
        services.down(d)


@pytest.fixture(scope="session")
def tansu_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = os.environ.get("RINGLEADER_TEST_TANSU")
    if env:
        yield env
        return
    from ringleader.local import services

    d = tmp_path_factory.mktemp("tansu")
    try:
        stack = services.up(d, tansu=True)
    except services.ServiceStartError as e:
        _unavailable("Tansu", e)
    try:
        yield stack.bootstrap
    finally:
        services.down(d)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A three-node KRaft cluster; yields the `services.Stack` (nodes carry pids)."""
    from ringleader.local import services

    d = tmp_path_factory.mktemp("kafka3")
    try:
        stack = services.up(d, kafka_nodes=3)
    except services.ServiceStartError as e:
        _unavailable("Apache Kafka three-node cluster", e)
    try:
        yield stack
    finally:
        services.down(d)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = os.environ.get("RINGLEADER_TEST_REDIS")
    if env:
        yield env
        return
    from ringleader.local import services

    d = tmp_path_factory.mktemp("redis")
    try:
        stack = services.up(d, redis=True)
    except services.ServiceStartError as e:
        _unavailable("Redis", e)
    try:
        assert stack.redis is not None
        yield stack.redis
    finally:
        services.down(d)


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
