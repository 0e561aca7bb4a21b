"""Time each assignor on 10,000 partitions over 1,000 members (median of several runs).

Run: .venv/bin/python benchmarks/bench_assignor.py [--runs N]
The sticky case starts from a settled round-robin assignment with one member gone, so it
measures the realistic rebalance path; the capacity case has mixed capacities and labels.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from ringleader.coordinator.assignors import CapacityAssignor, RoundRobinAssignor, StickyAssignor
from ringleader.coordinator.metadata import MemberMetadata

PARTITIONS = 10_000
MEMBERS = 1_000
ROUNDROBIN_TARGET_MS = 50.0


def members_plain() -> dict[str, MemberMetadata]:
    return {f"member-{i:04d}": MemberMetadata(worker_id=f"w{i:04d}") for i in range(MEMBERS)}


def members_sticky() -> dict[str, MemberMetadata]:
    base = members_plain()
    settled = RoundRobinAssignor().assign(base, range(PARTITIONS))
    held = {
        mid: MemberMetadata(m.worker_id, held_generation=1, held=tuple(settled[mid]))
        for mid, m in base.items()
    }
    del held["member-0500"]
    return held


def members_capacity() -> dict[str, MemberMetadata]:
    return {
        f"member-{i:04d}": MemberMetadata(
            worker_id=f"w{i:04d}",
            capacity=1 + i % 4,
            labels={"gpu": "yes"} if i % 10 == 0 else {},
            zone=f"z{i % 3}",
        )
        for i in range(MEMBERS)
    }


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), min(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    parts = list(range(PARTITIONS))
    reqs = {p: {"gpu": "yes"} for p in range(0, PARTITIONS, 50)}
    reqs.update({p: {"zone": "z1"} for p in range(1, PARTITIONS, 50)})
    cases: list[tuple[str, Callable[[], object]]] = []
    rr, m_plain = RoundRobinAssignor(), members_plain()
    cases.append(("roundrobin", lambda: rr.assign(m_plain, parts)))
    st, m_sticky = StickyAssignor(), members_sticky()
    cases.append(("sticky (1 of 1000 left)", lambda: st.assign(m_sticky, parts)))
    cap, m_cap = CapacityAssignor(reqs), members_capacity()
    cases.append(("capacity (labels+weights)", lambda: cap.assign(m_cap, parts)))
    print(f"{PARTITIONS} partitions over {MEMBERS} members, {args.runs} runs each")
    for name, fn in cases:
        med, best = median_ms(fn, args.runs)
        note = ""
        if name == "roundrobin":
            note = "  OK" if med < ROUNDROBIN_TARGET_MS else f"  OVER {ROUNDROBIN_TARGET_MS} ms"
        print(f"  {name:28s} median {med:8.2f} ms   min {best:8.2f} ms{note}")


if __name__ == "__main__":
    main()
