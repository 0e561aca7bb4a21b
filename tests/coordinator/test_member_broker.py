"""Members as OS processes against real brokers: convergence, leave, join, kill, pause,
a leader dying mid-commit, and (on the three-node cluster) the coordinator dying.

Every member process (tests/coordinator/member_proc.py) writes a ledger of what it was
assigned, revoked, and would have worked on; the checks below read those ledgers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ringleader.coordinator.topics import ensure_topic

MEMBER_PROC = Path(__file__).with_name("member_proc.py")
SESSION_MS = 6000
HEARTBEAT_MS = 500
PARTITIONS = 6
WORK_PERIOD = 0.05
# Upper bounds for the tests (a busy 2-core machine); the benchmark measures real figures.
SETTLE_TIMEOUT = 60.0


@dataclass
class Proc:
    worker: str
    popen: subprocess.Popen[bytes]
    ledger: Path
    ended_at: float | None = None  # when the test killed it (its claims end there)
    stopped: bool = False

    @property
    def alive(self) -> bool:
        return self.ended_at is None and self.popen.poll() is None


@dataclass(frozen=True)
class Settled:
    generation: int
    leader: str
    at: float  # when the last member applied it
    owners: dict[str, tuple[int, ...]]  # worker -> partitions


@dataclass
class Group:
    broker: str
    name: str
    tmp: Path
    partitions: int = PARTITIONS
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"{self.name}.tasks"

    @property
    def assignments(self) -> str:
        return f"{self.name}.assignments"

    def create_topics(self, replication: int = 1) -> None:
        ensure_topic(self.broker, self.topic, self.partitions, replication)
        ensure_topic(self.broker, self.assignments, 1, replication)

    def spawn(self, worker: str, *extra: str) -> Proc:
        ledger = self.tmp / f"{worker}.jsonl"
        cmd = [
            sys.executable,
            str(MEMBER_PROC),
            "--bootstrap",
            self.broker,
            "--group",
            self.name,
            "--topic",
            self.topic,
            "--assignments",
            self.assignments,
            "--partitions",
            str(self.partitions),
            "--worker-id",
            worker,
            "--ledger",
            str(ledger),
            "--session-ms",
            str(SESSION_MS),
            "--heartbeat-ms",
            str(HEARTBEAT_MS),
            "--work-ms",
            str(int(WORK_PERIOD * 1000)),
            "--log-level",
            "INFO",
            *extra,
        ]
        err = open(self.tmp / f"{worker}.log", "ab")  # noqa: SIM115 - lives as long as the proc
        popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        proc = Proc(worker, popen, ledger)
        self.procs[worker] = proc
        return proc

    def events(self, worker: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in self.procs.values():
            if worker is not None and p.worker != worker:
                continue
            if p.ledger.exists():
                for line in p.ledger.read_text().splitlines():
                    if line.strip():
                        out.append(json.loads(line))
        out.sort(key=lambda e: e["t"])
        return out

    def holding(self, worker: str) -> dict[str, Any] | None:
        """The assignment a worker holds now according to its ledger, or None."""
        current: dict[str, Any] | None = None
        for e in self.events(worker):
            if e["ev"] == "assigned":
                current = e
            elif e["ev"] in ("revoked", "closed", "crash"):
                current = None
        return current

    def settled(self, workers: list[str]) -> Settled | None:
        held = {w: self.holding(w) for w in workers}
        if any(h is None for h in held.values()):
            return None
        hs = [h for h in held.values() if h is not None]
        if len({(h["gen"], h["leader"]) for h in hs}) != 1:
            return None
        parts = [p for h in hs for p in h["parts"]]
        if sorted(parts) != list(range(self.partitions)):
            return None
        return Settled(
            hs[0]["gen"],
            hs[0]["leader"],
            max(h["t"] for h in hs),
            {w: tuple(h["parts"]) for w, h in held.items() if h is not None},
        )

    def wait_settled(
        self, workers: list[str], timeout: float = SETTLE_TIMEOUT, after: float = 0.0
    ) -> Settled:
        """Wait until exactly `workers` hold one complete, disjoint generation applied after
        `after`; fail with the ledgers' tail if they do not in time."""
        found: list[Settled] = []

        def ok() -> bool:
            s = self.settled(workers)
            if s is None or s.at < after:
                return False
            for w, p in self.procs.items():
                if w not in workers and p.alive and self.holding(w) is not None:
                    return False
            found.append(s)
            return True

        wait_for(ok, timeout, lambda: f"{workers} to settle; ledger tail: {self.events()[-12:]}")
        return found[-1]

    def kill(self, worker: str, sig: signal.Signals = signal.SIGKILL) -> float:
        """Signal a member; returns a time bracketing the signal conservatively: after it for
        SIGKILL/SIGSTOP (the member may act until then), before it for SIGCONT."""
        p = self.procs[worker]
        before = time.monotonic()
        os.kill(p.popen.pid, sig)
        t = before if sig == signal.SIGCONT else time.monotonic()
        if sig == signal.SIGKILL:
            p.popen.wait(10)
            p.ended_at = t
        return t

    def terminate(self, worker: str) -> None:
        p = self.procs[worker]
        p.popen.send_signal(signal.SIGTERM)
        assert p.popen.wait(60) == 0

    def cleanup(self) -> None:
        for p in self.procs.values():
            if p.popen.poll() is None:
                if p.stopped:
                    os.kill(p.popen.pid, signal.SIGCONT)
                p.popen.kill()
                p.popen.wait(10)

    # ---- invariants ------------------------------------------------------------------

    def claims_by_assignment(self, now: float) -> list[tuple[int, str, float, float]]:
        """(partition, worker, start, end): from `assigned` to `revoked` or process death."""
        out: list[tuple[int, str, float, float]] = []
        for w, p in self.procs.items():
            start: float | None = None
            parts: list[int] = []
            end_of_life = p.ended_at if p.ended_at is not None else now
            for e in self.events(w):
                if e["ev"] == "assigned":
                    start, parts = e["t"], e["parts"]
                elif e["ev"] in ("revoked", "crash", "closed") and start is not None:
                    out += [(q, w, start, e["t"]) for q in parts]
                    start = None
            if start is not None:
                out += [(q, w, start, end_of_life) for q in parts]
        return out

    def claims_by_work(self) -> list[tuple[int, str, float, float]]:
        """(partition, worker, first, end) of each assignment epoch's work lines.

        A member may have started a task up to one work period after its last line, so a
        claim ends one period later, or at the epoch's `revoked` if that came sooner (work
        lines are written under the same lock as `revoked`).
        """
        spans: dict[tuple[int, str, int], list[float]] = {}
        revoked: dict[tuple[str, int], float] = {}
        for e in self.events():
            if e["ev"] == "revoked":
                revoked.setdefault((e["worker"], e["epoch"]), e["t"])
            if e["ev"] != "work":
                continue
            for q in e["parts"]:
                span = spans.setdefault((q, e["worker"], e["epoch"]), [e["t"], e["t"]])
                span[0] = min(span[0], e["t"])
                span[1] = max(span[1], e["t"])
        return [
            (q, w, a, min(b + WORK_PERIOD, revoked.get((w, epoch), float("inf"))))
            for (q, w, epoch), (a, b) in spans.items()
        ]

    def assert_no_overlap(self, claims: list[tuple[int, str, float, float]]) -> None:
        by_part: dict[int, list[tuple[float, float, str]]] = {}
        for q, w, a, b in claims:
            by_part.setdefault(q, []).append((a, b, w))
        for q, spans in by_part.items():
            spans.sort()
            for i, (a1, b1, w1) in enumerate(spans):
                for a2, b2, w2 in spans[i + 1 :]:
                    if w1 == w2:
                        continue
                    assert b1 <= a2, (
                        f"partition {q} claimed by {w1} [{a1:.3f}, {b1:.3f}] and "
                        f"{w2} [{a2:.3f}, {b2:.3f}] at the same time"
                    )

    def assert_invariants(self, *, by_assignment: bool = True) -> None:
        now = time.monotonic()
        if by_assignment:
            self.assert_no_overlap(self.claims_by_assignment(now))
        self.assert_no_overlap(self.claims_by_work())
        for e in self.events():
            if e["ev"] == "fenced":
                assert not e["fatal"], e


def wait_for(cond: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what()}")
        time.sleep(0.1)


@pytest.fixture
def group(broker: str, unique_name: str, tmp_path: Path) -> Iterator[Group]:
    g = Group(broker, unique_name, tmp_path)
    g.create_topics()
    try:
        yield g
    finally:
        g.cleanup()


def start_three(group: Group) -> Settled:
    for w in ("w1", "w2", "w3"):
        group.spawn(w)
    return group.wait_settled(["w1", "w2", "w3"])


def worker_of(group: Group, settled: Settled, member_id: str) -> str:
    for w in settled.owners:
        h = group.holding(w)
        if h is not None and h["member"] == member_id:
            return w
    raise AssertionError(f"no worker is member {member_id}")


# ---- tests on Apache Kafka and Tansu -----------------------------------------------------


@pytest.mark.broker
@pytest.mark.slow
def test_three_members_converge(group: Group) -> None:
    s = start_three(group)
    assert sorted(p for ps in s.owners.values() for p in ps) == list(range(PARTITIONS))
    assert all(len(ps) == 2 for ps in s.owners.values())  # round-robin: 6 over 3
    # The generation every member applied was committed by the leader they all name.
    assigned = [e for e in group.events() if e["ev"] == "assigned" and e["gen"] == s.generation]
    assert {e["leader"] for e in assigned} == {s.leader}
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_graceful_leave_hands_over_everything(group: Group) -> None:
    s1 = start_three(group)
    leaver = "w2"
    t = time.monotonic()
    group.terminate(leaver)
    s2 = group.wait_settled(["w1", "w3"], after=t)
    assert s2.generation != s1.generation or s2.leader != s1.leader or s2.at > t
    ev = group.events(leaver)
    kinds = [e["ev"] for e in ev]
    assert kinds[-2:] == ["revoked", "closed"]
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_new_member_gets_its_share(group: Group) -> None:
    start_three(group)
    t = time.monotonic()
    group.spawn("w4")
    s = group.wait_settled(["w1", "w2", "w3", "w4"], after=t)
    assert len(s.owners["w4"]) >= 1
    assert sorted(len(ps) for ps in s.owners.values()) == [1, 1, 2, 2]
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_killed_follower_is_replaced_after_session_timeout(group: Group) -> None:
    s1 = start_three(group)
    leader = worker_of(group, s1, s1.leader)
    victim = next(w for w in ("w1", "w2", "w3") if w != leader)
    t = group.kill(victim)
    rest = [w for w in ("w1", "w2", "w3") if w != victim]
    s2 = group.wait_settled(rest, after=t)
    took = s2.at - t
    assert took < SESSION_MS / 1000 + 15, took
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_killed_leader_is_replaced_by_a_new_leader(group: Group) -> None:
    s1 = start_three(group)
    leader = worker_of(group, s1, s1.leader)
    t = group.kill(leader)
    rest = [w for w in ("w1", "w2", "w3") if w != leader]
    s2 = group.wait_settled(rest, after=t)
    assert s2.leader != s1.leader
    assert worker_of(group, s2, s2.leader) in rest
    assert s2.at - t < SESSION_MS / 1000 + 15, s2.at - t
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_paused_member_never_overlaps_its_successor(group: Group) -> None:
    """SIGSTOP a member past its session timeout, then SIGCONT it."""
    s1 = start_three(group)
    leader = worker_of(group, s1, s1.leader)
    zombie = next(w for w in ("w1", "w2", "w3") if w != leader)
    zombie_parts = set(s1.owners[zombie])
    t_stop = group.kill(zombie, signal.SIGSTOP)
    group.procs[zombie].stopped = True
    rest = [w for w in ("w1", "w2", "w3") if w != zombie]

    # The others take over the paused member's partitions and work on them.
    def successors_working() -> bool:
        worked = {
            q
            for e in group.events()
            if e["ev"] == "work" and e["worker"] in rest and e["t"] > t_stop
            for q in e["parts"]
        }
        return zombie_parts <= worked

    wait_for(successors_working, SETTLE_TIMEOUT, lambda: f"{rest} to work {zombie_parts}")
    assert group.settled(rest) is not None
    t_cont = group.kill(zombie, signal.SIGCONT)
    group.procs[zombie].stopped = False
    s3 = group.wait_settled(["w1", "w2", "w3"], after=t_cont)
    assert zombie in s3.owners

    zev = group.events(zombie)
    fenced = [e for e in zev if e["ev"] == "fenced" and e["t"] > t_cont]
    assert fenced and not fenced[0]["fatal"], zev[-10:]
    # The paused member did no work after its lease lapsed: nothing between stop and the
    # generation it applied after resuming.
    after_stop = [e for e in zev if e["ev"] == "work" and t_stop < e["t"] < fenced[0]["t"]]
    assert not after_stop, after_stop[:3]
    # Ownership is judged by what members would have worked on: the paused member's
    # `assigned` ... `revoked` span necessarily covers the time it was stopped.
    group.assert_invariants(by_assignment=False)


@pytest.mark.broker
@pytest.mark.slow
def test_leader_dying_mid_commit_leaves_nothing_applied(group: Group) -> None:
    token = group.tmp / "crash-token"
    for w in ("w1", "w2", "w3"):
        group.spawn(w, "--crash-token", str(token))
    group.wait_settled(["w1", "w2", "w3"])
    token.write_text("crash the next leader after its parts, before its commit")
    t = time.monotonic()
    group.spawn("w4", "--crash-token", str(token))  # forces a rebalance

    def crashed() -> bool:
        return any(e["ev"] == "crash" for e in group.events())

    wait_for(crashed, SETTLE_TIMEOUT, lambda: f"a leader to crash; tail {group.events()[-8:]}")
    crash = next(e for e in group.events() if e["ev"] == "crash")
    dead = crash["worker"]
    assert group.procs[dead].popen.wait(10) == 17
    group.procs[dead].ended_at = crash["t"]
    rest = [w for w in ("w1", "w2", "w3", "w4") if w != dead]
    s = group.wait_settled(rest, after=t)
    assert s.leader != crash["member"]
    # Invariant 5: nobody applied the generation whose commit never came.
    applied_crashed = [
        e
        for e in group.events()
        if e["ev"] == "assigned" and e["gen"] == crash["gen"] and e["leader"] == crash["member"]
    ]
    assert not applied_crashed, applied_crashed
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_static_member_restart_gets_a_share(
    broker: str, broker_kind: str, unique_name: str, tmp_path: Path
) -> None:
    """A static member (group.instance.id) restarted under the same instance id gets a new
    member id; Kafka hands it the old id's generation without a rebalance, in which it has
    no part. It must rejoin (not sit on an empty assignment) so every partition has an
    owner again. Tansu instead rebalances. In-process members (threads) here."""
    from dataclasses import replace

    from ringleader.coordinator.member import Member
    from ringleader.coordinator.metadata import MemberMetadata
    from ringleader.coordinator.settings import MemberSettings

    g = Group(broker, unique_name, tmp_path, partitions=4)
    g.create_topics()
    base = MemberSettings(
        group_id=unique_name,
        session_timeout_ms=SESSION_MS,
        rebalance_timeout_ms=12000,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )

    def member(i: int) -> Member:
        return Member(
            broker,
            replace(base, group_instance_id=f"instance-{i}"),
            topic=g.topic,
            partitions=4,
            assignment_topic=g.assignments,
            metadata=MemberMetadata(worker_id=f"w{i}"),
            on_assigned=lambda gen, parts: None,
            on_revoked=lambda parts: None,
        )

    def complete(ms: list[Member]) -> bool:
        gens = {m.generation for m in ms}
        return (
            len(gens) == 1
            and -1 not in gens
            and sorted(p for m in ms for p in m.assigned) == [0, 1, 2, 3]
        )

    a, b = member(0), member(1)
    b2: Member | None = None
    try:
        a.start()
        b.start()
        wait_for(lambda: complete([a, b]), SETTLE_TIMEOUT, lambda: "static members to settle")
        old_id = b.member_id
        b.close()  # static: no LeaveGroup
        b2 = member(1)
        b2.start()
        wait_for(
            lambda: b2 is not None and complete([a, b2]),
            SETTLE_TIMEOUT,
            lambda: f"restarted static member to get a share: {a.assigned} / {b2 and b2.assigned}",
        )
        # Broker fact: Kafka gives the restarted static member a new member id; Tansu
        # derives it from the instance id and gives the same one back.
        assert (b2.member_id != old_id) == (broker_kind == "kafka")
        assert a.fatal_error is None and b2.fatal_error is None
    finally:
        a.close()
        if b2 is not None:
            b2.close()


# ---- three-node cluster ----------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.slow
def test_coordinator_node_dies(kafka_cluster: Any, unique_name: str, tmp_path: Path) -> None:
    from ringleader.coordinator.wire import find_coordinator
    from ringleader.local import services

    g = Group(kafka_cluster.bootstrap, unique_name, tmp_path)
    g.create_topics(replication=3)
    workers = ["w1", "w2", "w3"]
    killed: int | None = None
    try:
        start_three(g)
        coord = find_coordinator(kafka_cluster.bootstrap, g.name, timeout=30)
        node = next(n for n in kafka_cluster.nodes if n.node_id == coord.node_id)
        t = time.monotonic()
        services.stop_service(kafka_cluster, node.name)
        killed = coord.node_id

        # Every member finds the new coordinator, and keeps (or regains) a complete
        # assignment it can work on: work lines more than a session after the kill prove
        # its heartbeats to the new coordinator succeed (the lease only grows with them).
        def recovered() -> bool:
            evs = [e for e in g.events() if e["t"] > t]
            for w in workers:
                moved = [e for e in evs if e["worker"] == w and e["ev"] == "coordinator"]
                if not moved or moved[-1]["node"] == killed:
                    return False
                late = [
                    e
                    for e in evs
                    if e["worker"] == w and e["ev"] == "work" and e["t"] > t + SESSION_MS / 1000
                ]
                if not late:
                    return False
            return g.settled(workers) is not None

        wait_for(recovered, 120, lambda: f"recovery from node {killed}; {g.events()[-9:]}")
        s = g.settled(workers)
        assert s is not None
        assert sorted(p for ps in s.owners.values() for p in ps) == list(range(PARTITIONS))
        moved = find_coordinator(kafka_cluster.bootstrap, g.name, timeout=30)
        assert moved.node_id != killed
        g.assert_invariants()
    finally:
        g.cleanup()
        if killed is not None:
            services.restart_kafka_node(kafka_cluster, killed)
