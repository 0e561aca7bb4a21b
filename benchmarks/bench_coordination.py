"""Rebalance latency of the coordination layer on Apache Kafka and on Tansu.

1. Startup: N members (THREADS in this one process, one `Member` each) start at once; time
   until the leader committed the first generation and until every member applied it.
2. Change: 3 members as OS PROCESSES (tests/coordinator/member_proc.py); after they settle,
   a graceful leave (SIGTERM -> close -> LeaveGroup), a SIGKILL, and a new member joining;
   time from the change until the first member and until all members applied the next
   complete generation.

    RINGLEADER_TEST_KAFKA=127.0.0.1:19092 RINGLEADER_TEST_TANSU=127.0.0.1:19192 \\
        .venv/bin/python benchmarks/bench_coordination.py [--sizes 3,10,50]

Targets: after a leave or a join the next generation within 2 s on Apache Kafka; after a
kill within session timeout + 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ringleader.coordinator.member import Member
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.settings import MemberSettings
from ringleader.coordinator.topics import ensure_topic

MEMBER_PROC = Path(__file__).resolve().parent.parent / "tests" / "coordinator" / "member_proc.py"
PARTITIONS = 60


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def fresh(bootstrap: str, tag: str) -> str:
    ns = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, f"{ns}.tasks", PARTITIONS)
    ensure_topic(bootstrap, f"{ns}.assignments", 1)
    return ns


# ---- 1. startup with N in-process members ----------------------------------------------


def bench_startup(bootstrap: str, n: int, base: MemberSettings) -> dict[str, float]:
    ns = fresh(bootstrap, f"start{n}")
    settings = replace(base, group_id=ns)
    applied: dict[int, tuple[float, int]] = {}
    lock = threading.Lock()

    def cb(i: int) -> Callable[[int, list[int]], None]:
        def on_assigned(gen: int, parts: list[int]) -> None:
            with lock:
                applied[i] = (time.monotonic(), gen)

        return on_assigned

    def on_revoked(parts: list[int]) -> None:
        return None

    members = [
        Member(
            bootstrap,
            settings,
            topic=f"{ns}.tasks",
            partitions=PARTITIONS,
            assignment_topic=f"{ns}.assignments",
            metadata=MemberMetadata(worker_id=f"w{i:03d}"),
            on_assigned=cb(i),
            on_revoked=on_revoked,
        )
        for i in range(n)
    ]
    t0 = time.monotonic()
    for m in members:
        m.start()

    def complete() -> bool:
        gens = {m.generation for m in members}
        if len(gens) != 1 or -1 in gens:
            return False
        return sorted(p for m in members for p in m.assigned) == list(range(PARTITIONS))

    ok = wait_for(complete, 180)
    t_all = time.monotonic()
    with lock:
        gen = members[0].generation
        first = min((t for t, g in applied.values() if g == gen), default=float("nan"))
    for m in members:
        m.close(timeout=30)
    if not ok:
        return {"first_applied_s": float("nan"), "all_applied_s": float("nan")}
    return {"first_applied_s": first - t0, "all_applied_s": t_all - t0, "generation": gen}


# ---- 2. leave / kill / join with member processes --------------------------------------


class Procs:
    def __init__(self, bootstrap: str, ns: str, tmp: Path, session_ms: int, hb_ms: int) -> None:
        self.bootstrap, self.ns, self.tmp = bootstrap, ns, tmp
        self.session_ms, self.hb_ms = session_ms, hb_ms
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, w: str) -> None:
        cmd = [
            sys.executable,
            str(MEMBER_PROC),
            "--bootstrap",
            self.bootstrap,
            "--group",
            self.ns,
            "--topic",
            f"{self.ns}.tasks",
            "--assignments",
            f"{self.ns}.assignments",
            "--partitions",
            str(PARTITIONS),
            "--worker-id",
            w,
            "--ledger",
            str(self.tmp / f"{w}.jsonl"),
            "--session-ms",
            str(self.session_ms),
            "--heartbeat-ms",
            str(self.hb_ms),
            "--work-ms",
            "200",
        ]
        self.procs[w] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def holding(self, w: str) -> dict[str, Any] | None:
        path = self.tmp / f"{w}.jsonl"
        cur: dict[str, Any] | None = None
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            e = json.loads(line)
            if e["ev"] == "assigned":
                cur = e
            elif e["ev"] in ("revoked", "closed"):
                cur = None
        return cur

    def settled_after(self, workers: list[str], after: float) -> tuple[float, float] | None:
        hs = [self.holding(w) for w in workers]
        if any(h is None or h["t"] < after for h in hs):
            return None
        real = [h for h in hs if h is not None]
        if len({(h["gen"], h["leader"]) for h in real}) != 1:
            return None
        if sorted(p for h in real for p in h["parts"]) != list(range(PARTITIONS)):
            return None
        return min(h["t"] for h in real) - after, max(h["t"] for h in real) - after

    def wait(self, workers: list[str], after: float, timeout: float = 120) -> tuple[float, float]:
        found: list[tuple[float, float]] = []

        def ok() -> bool:
            r = self.settled_after(workers, after)
            if r is not None:
                found.append(r)
            return r is not None

        if not wait_for(ok, timeout):
            return float("nan"), float("nan")
        return found[-1]

    def cleanup(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


def bench_changes(bootstrap: str, session_ms: int, hb_ms: int) -> dict[str, tuple[float, float]]:
    ns = fresh(bootstrap, "chg")
    with tempfile.TemporaryDirectory() as d:
        g = Procs(bootstrap, ns, Path(d), session_ms, hb_ms)
        try:
            for w in ("w1", "w2", "w3", "w4"):
                g.spawn(w)
            g.wait(["w1", "w2", "w3", "w4"], 0.0)
            out: dict[str, tuple[float, float]] = {}
            t = time.monotonic()
            g.procs["w4"].send_signal(signal.SIGTERM)
            out["leave"] = g.wait(["w1", "w2", "w3"], t)
            g.procs["w4"].wait(30)
            t = time.monotonic()
            g.spawn("w5")
            out["join"] = g.wait(["w1", "w2", "w3", "w5"], t)
            g.procs["w3"].kill()
            t = time.monotonic()
            g.procs["w3"].wait(10)
            out["kill"] = g.wait(["w1", "w2", "w5"], t)
            return out
        finally:
            g.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kafka", default=os.environ.get("RINGLEADER_TEST_KAFKA", ""))
    ap.add_argument("--tansu", default=os.environ.get("RINGLEADER_TEST_TANSU", ""))
    ap.add_argument("--sizes", default="3,10,50")
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-ms", type=int, default=500)
    ap.add_argument("--skip-startup", action="store_true")
    args = ap.parse_args()
    brokers = [(k, b) for k, b in (("kafka", args.kafka), ("tansu", args.tansu)) if b]
    if not brokers:
        print("set RINGLEADER_TEST_KAFKA and/or RINGLEADER_TEST_TANSU (or --kafka/--tansu)")
        return 2
    base = MemberSettings(
        group_id="bench",
        session_timeout_ms=args.session_ms,
        rebalance_timeout_ms=max(12000, 2 * args.session_ms),
        heartbeat_interval_ms=args.heartbeat_ms,
        fence_margin_ms=2000,
    )
    print(
        f"settings: session {base.session_timeout_ms} ms, rebalance {base.rebalance_timeout_ms}"
        f" ms, heartbeat {base.heartbeat_interval_ms} ms, fence margin {base.fence_margin_ms}"
        f" ms, assignor {base.assignor}, {PARTITIONS} partitions"
    )
    sizes = [int(x) for x in args.sizes.split(",") if x]
    for kind, bootstrap in brokers:
        print(f"\n== {kind} ({bootstrap})")
        if not args.skip_startup:
            for n in sizes:
                r = bench_startup(bootstrap, n, base)
                print(
                    f"startup  {n:3d} members (threads): first applied "
                    f"{r['first_applied_s']:6.2f} s, all applied {r['all_applied_s']:6.2f} s"
                )
        changes = bench_changes(bootstrap, args.session_ms, args.heartbeat_ms)
        target = {
            "leave": 2.0,
            "join": 2.0,
            "kill": args.session_ms / 1000 + 2.0,
        }
        for what, (first, last) in changes.items():
            mark = ""
            if kind == "kafka":
                verdict = "met" if last <= target[what] else "MISSED"
                mark = f"  (target <= {target[what]:.1f} s: {verdict})"
            print(
                f"{what:5s} -> next generation (processes, 3-4 members): first applied "
                f"{first:6.2f} s, all applied {last:6.2f} s{mark}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
