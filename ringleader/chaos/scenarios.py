"""The chaos matrix: each scenario is a fault, how it heals, and what it allows.

`run(scenario, backend, plan)` runs one through `runner.run_scenario`. Timings are the
workers' session timeout (`Stage.session_s`, 6 s in the local backend): a SIGKILLed worker's
partitions must be working again within session + 2 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import redis

from ringleader.chaos.backends.base import Backend
from ringleader.chaos.ledger import DIE_BEFORE_COMMIT, SERVICE, flag_key, torn_key
from ringleader.chaos.report import Expect, Report
from ringleader.chaos.runner import Injected, Plan, Stage, backend_session_s, run_scenario, wait_for
from ringleader.chaos.stub import FlakyHTTP, serving
from ringleader.coordinator.wire import find_coordinator
from ringleader.registry import Instance, RegistryBackend

__all__ = ["SCENARIOS", "Scenario", "by_name", "run"]

SIGKILL_MARGIN = 2.0  # seconds past the session timeout a SIGKILLed worker's work may take


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    inject: Callable[[Stage], Injected]
    expect: Callable[[float], Expect] = field(default=lambda _session: Expect())
    nodes: int = 1  # Kafka nodes it needs
    downstream: bool = False  # tasks end with a call to a downstream the runner serves
    cuttable: str | None = None  # the worker started so that `cut` can isolate it
    # Runs on the local Tansu (one in-memory broker: no broker restart, no proxied listener).
    tansu: bool = True


def _kill_bound(session_s: float) -> Expect:
    return Expect(failover_bound=session_s + SIGKILL_MARGIN)


def _now() -> float:
    return time.time()


def _kill(v: str, st: Stage) -> Injected:
    t = _now()
    st.backend.signal(v, signal.SIGKILL)
    return Injected(t, st.owned(v), ended=frozenset({v}))


def _worker_kill(st: Stage) -> Injected:
    return _kill(st.follower(), st)


def _leader_kill(st: Stage) -> Injected:
    return _kill(st.leader(), st)


def _worker_term(st: Stage) -> Injected:
    v = st.follower()
    t = _now()
    st.backend.signal(v, signal.SIGTERM)
    return Injected(t, st.owned(v), ended=frozenset({v}), clean_exit=frozenset({v}))


def _worker_stop(st: Stage) -> Injected:
    v = st.follower()
    t = _now()
    st.backend.signal(v, signal.SIGSTOP)
    return Injected(
        t, st.owned(v),
        heal=lambda: st.backend.signal(v, signal.SIGCONT), heal_after=st.session_s + 3.0,
    )  # fmt: skip


def _leader_before_commit(st: Stage) -> Injected:
    """Arm the leader's fault and make it publish: a new worker joins, the leader writes the
    new generation's parts, notes it, and SIGKILLs itself before the commit record."""
    ns = st.settings.namespace
    st.ledger.set(flag_key(ns, DIE_BEFORE_COMMIT), "1")
    st.backend.start_worker("w4", st.settings)
    old = list(st.workers)
    st.workers.append("w4")
    wait_for(lambda: any(not st.backend.alive(w) for w in old), 90,
             "the leader to die between its assignment's parts and its commit")  # fmt: skip
    t = _now()
    dead = next(w for w in old if not st.backend.alive(w))
    return Injected(t, st.owned(dead), ended=frozenset({dead}), checks=[_torn_never_applied])


def _torn_never_applied(st: Stage) -> list[str]:
    torn = [
        line.decode().split() for line in st.ledger.lrange(torn_key(st.settings.namespace), 0, -1)
    ]
    if not torn:
        return ["the leader's fault never fired: no torn generation"]
    out = []
    committed = st.watcher.committed
    for gen_text, hexdigest in torn:
        g = int(gen_text)
        if any(c.digest.hex() == hexdigest for c in committed):
            out.append(f"torn generation {g} was read as committed (invariant 5)")
        if any(c.assignment.generation == g for c in committed):
            continue  # the broker gave the number again (Tansu): the digest check decides
        applied = [w for w in st.workers if f"generation {g} applied" in st.backend.log(w)]
        if applied:
            out.append(f"torn generation {g} applied by {', '.join(applied)} (invariant 5)")
    return out


def _coordinator_kill(st: Stage) -> Injected:
    sec = st.settings.security
    node = find_coordinator(st.settings.bootstrap, st.group, timeout=10, security=sec).node_id
    t = _now()
    st.backend.kill_broker(node)
    return Injected(
        t, st.all_partitions, heal=lambda: st.backend.start_broker(node), heal_after=10.0
    )


def _broker_restart(st: Stage) -> Injected:
    t = _now()
    st.backend.kill_broker(1)
    return Injected(t, st.all_partitions, heal=lambda: st.backend.start_broker(1), heal_after=3.0)


def _redis_restart(st: Stage) -> Injected:
    t = _now()
    st.backend.kill_redis()
    return Injected(t, st.all_partitions, heal=st.backend.start_redis, heal_after=3.0)


def _partition(st: Stage) -> Injected:
    v = "w3"
    t = _now()
    st.backend.cut(v)
    return Injected(t, st.owned(v), heal=lambda: st.backend.heal(v), heal_after=st.session_s + 3.0)


def _downstream_outage(st: Stage) -> Injected:
    stub = st.stub
    assert stub is not None

    def heal() -> None:
        stub.failing = False

    t = _now()
    stub.failing = True
    return Injected(t, st.all_partitions, heal=heal, heal_after=8.0)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("worker-kill", "SIGKILL a worker under load", _worker_kill, _kill_bound),
    Scenario("worker-term", "SIGTERM a worker: it drains, nothing repeats", _worker_term,
             lambda _s: Expect(dup_exec_allowed=False)),
    Scenario("worker-pause", "SIGSTOP a worker past its session, then SIGCONT: no overlap",
             _worker_stop),
    Scenario("leader-kill", "SIGKILL the group's leader under load", _leader_kill, _kill_bound),
    Scenario("leader-torn-commit", "the leader dies between its assignment's parts and commit",
             _leader_before_commit),
    Scenario("broker-restart", "SIGKILL the only Kafka broker, restart it on its data",
             _broker_restart, tansu=False),
    Scenario("redis-restart", "SIGKILL the workers' Redis, restart it on its data",
             _redis_restart),
    Scenario("partition", "cut one worker off from every broker, heal after its session",
             _partition, cuttable="w3", tansu=False),
    Scenario("downstream-outage", "the tasks' downstream fails behind the breakers, recovers",
             _downstream_outage, downstream=True),
    Scenario("coordinator-kill", "SIGKILL the group coordinator's broker of 3, restart it",
             _coordinator_kill, nodes=3, tansu=False),
)  # fmt: skip


def by_name(names: list[str]) -> list[Scenario]:
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names] if names else list(SCENARIOS)


def run(
    scenario: Scenario, backend: Backend, plan: Plan, extra_env: dict[str, str] | None = None
) -> Report:
    backend.use(scenario.nodes)
    expect = scenario.expect(backend_session_s(backend))
    if backend.broker == "tansu":
        # The SIGKILL bound is promised on Apache Kafka; Tansu expires a session about 3 s
        # after it ends (seen here), so there the figure is reported, not bounded.
        expect = dataclasses.replace(expect, failover_bound=None)
    env = dict(extra_env or {})
    with _downstream(scenario, backend, env) as stub:
        return run_scenario(
            scenario.name, scenario.inject, expect,
            backend, plan, stub=stub, cuttable=scenario.cuttable, extra_env=env,
        )  # fmt: skip


@contextlib.contextmanager
def _downstream(
    scenario: Scenario, backend: Backend, env: dict[str, str]
) -> Iterator[FlakyHTTP | None]:
    """For a downstream scenario: serve the stub, register it in the workers' registry."""
    if not scenario.downstream:
        yield None
        return
    prefix = f"chaos:{uuid.uuid4().hex[:8]}:registry"
    r: redis.Redis[bytes] = redis.Redis.from_url(backend.settings("chaos", 1).redis)
    reg = RegistryBackend(r, prefix)
    with serving(host=backend.bind_host) as stub:
        address = f"http://{backend.reach(stub.server_address[1])}"
        reg.register(Instance(SERVICE, "e1", address, lease_duration=3600.0), time.time())
        env["RINGLEADER_CHAOS_REGISTRY"] = prefix
        try:
            yield stub
        finally:
            reg.drop()
            r.close()
