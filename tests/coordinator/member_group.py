"""A group of member processes (tests/coordinator/member_proc.py) and the checks on their ledgers.

Every member process writes a ledger of what it was assigned, revoked, and would have worked
on; `Group` spawns, signals and reads them, and asserts the ownership invariants.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
                text = p.ledger.read_text()
                # Up to the last newline: a read can land while a member is mid-write (seen
                # in CI: half a line, which json cannot parse).
                for line in text[: text.rfind("\n") + 1].splitlines():
                    if line.strip():
                        out.append(json.loads(line))
        out.sort(key=lambda e: e["t"])
        return out

    def holding(self, worker: str) -> dict[str, Any] | None:
        """The assignment a worker holds now according to its ledger (its `parts` less what
        was revoked since: cooperative moves revoke a subset), or None."""
        current: dict[str, Any] | None = None
        for e in self.events(worker):
            if e["ev"] == "assigned":
                current = dict(e)
            elif e["ev"] == "revoked" and current is not None:
                rest = [q for q in current["parts"] if q not in e["parts"]]
                current = dict(current, parts=rest) if rest else None
            elif e["ev"] in ("closed", "crash"):
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
        """(partition, worker, start, end): from the `assigned` that first gave it to the
        revoke that named it (or process death); kept partitions stay one claim."""
        out: list[tuple[int, str, float, float]] = []
        for w, p in self.procs.items():
            open_: dict[int, float] = {}
            end_of_life = p.ended_at if p.ended_at is not None else now
            for e in self.events(w):
                if e["ev"] == "assigned":
                    for q in e["parts"]:
                        open_.setdefault(q, e["t"])
                    for q in [q for q in open_ if q not in e["parts"]]:
                        out.append((q, w, open_.pop(q), e["t"]))
                elif e["ev"] == "revoked":
                    for q in e["parts"]:
                        if q in open_:
                            out.append((q, w, open_.pop(q), e["t"]))
                elif e["ev"] in ("crash", "closed"):
                    out += [(q, w, t0, e["t"]) for q, t0 in open_.items()]
                    open_ = {}
            out += [(q, w, t0, end_of_life) for q, t0 in open_.items()]
        return out

    def claims_by_work(self) -> list[tuple[int, str, float, float]]:
        """(partition, worker, first, end) of each assignment epoch's work lines.

        A member may have started a task up to one work period after its last line, so a
        claim ends one period later, or at the partition's next `revoked` if that came sooner
        (work lines are written under the same lock as `revoked`).
        """
        spans: dict[tuple[int, str, int], list[float]] = {}
        revoked: dict[tuple[str, int], list[float]] = {}
        for e in self.events():
            if e["ev"] == "revoked":
                for q in e["parts"]:
                    revoked.setdefault((e["worker"], q), []).append(e["t"])
            if e["ev"] != "work":
                continue
            for q in e["parts"]:
                span = spans.setdefault((q, e["worker"], e["epoch"]), [e["t"], e["t"]])
                span[0] = min(span[0], e["t"])
                span[1] = max(span[1], e["t"])

        def end(q: int, w: str, last: float) -> float:
            later = [t for t in revoked.get((w, q), []) if t >= last]
            return min([last + WORK_PERIOD, *later])

        return [(q, w, a, end(q, w, b)) for (q, w, _epoch), (a, b) in spans.items()]

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
