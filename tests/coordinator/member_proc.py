"""A group member as an OS process, for integration tests and the benchmark.

Writes one JSON object per line to --ledger (its own file, O_APPEND): started, assigned,
revoked, fenced, work, crash, closed; each with `t` = time.monotonic() (CLOCK_MONOTONIC is
system-wide on Linux, so times of different processes compare). A "work" line lists the
partitions this member would run tasks of right now (Member.owns), every --work-ms.

SIGTERM: close gracefully (revoke, LeaveGroup) and exit 0.
--crash-token PATH: when this member leads a generation and PATH exists, it removes PATH,
writes only the assignment parts (no commit) and dies with os._exit(17): a leader crashing
in the middle of the 2PC commit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from ringleader.coordinator.assignment import Assignment, AssignmentLog, AssignmentPointer
from ringleader.coordinator.executor import publish_committed
from ringleader.coordinator.member import Member
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.settings import MemberSettings


class Ledger:
    def __init__(self, path: str, worker_id: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._worker = worker_id
        self._lock = threading.Lock()

    def write(self, ev: str, **fields: Any) -> None:
        rec = {"t": time.monotonic(), "ev": ev, "worker": self._worker, "pid": os.getpid()}
        rec.update(fields)
        line = (json.dumps(rec, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--assignments", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--worker-id", required=True)
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--rebalance-ms", type=int, default=12000)
    ap.add_argument("--heartbeat-ms", type=int, default=500)
    ap.add_argument("--fence-margin-ms", type=int, default=2000)
    ap.add_argument("--work-ms", type=int, default=50)
    ap.add_argument("--crash-token", default=None)
    ap.add_argument("--protocol", default="cooperative", choices=["cooperative", "eager"])
    ap.add_argument("--instance-id", default=None)
    ap.add_argument("--delay-ms", type=int, default=None)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format=f"%(asctime)s {args.worker_id} %(threadName)s %(message)s",
    )

    ledger = Ledger(args.ledger, args.worker_id)
    settings = MemberSettings(
        group_id=args.group,
        session_timeout_ms=args.session_ms,
        rebalance_timeout_ms=args.rebalance_ms,
        heartbeat_interval_ms=args.heartbeat_ms,
        fence_margin_ms=args.fence_margin_ms,
        rebalance_protocol=args.protocol,
        group_instance_id=args.instance_id,
        scheduled_rebalance_delay_ms=args.delay_ms,
    )
    # What the "worker" holds: (epoch, generation, partitions), epoch counts assignments.
    held: dict[str, Any] = {"epoch": 0, "gen": -1, "parts": []}
    held_lock = threading.Lock()
    member_box: list[Member] = []

    def on_assigned(generation: int, partitions: list[int]) -> None:
        m = member_box[0]
        with held_lock:
            held.update(epoch=held["epoch"] + 1, gen=generation, parts=list(partitions))
            ledger.write(
                "assigned",
                gen=generation,
                parts=partitions,
                epoch=held["epoch"],
                member=m.member_id,
                leader=m.leader_id,
                lease=m.lease_deadline,
            )

    def on_revoked(partitions: list[int]) -> None:
        # Cooperative moves revoke a subset (on a release thread); the rest stays owned.
        with held_lock:
            held["parts"] = [p for p in held["parts"] if p not in partitions]
            ledger.write("revoked", parts=partitions, epoch=held["epoch"])

    def on_fenced(reason: str, fatal: bool) -> None:
        ledger.write("fenced", reason=reason, fatal=fatal)

    def publisher(log: AssignmentLog, a: Assignment, timeout: float) -> AssignmentPointer:
        token = args.crash_token
        if token is not None:
            try:
                os.unlink(token)  # exactly one leader consumes the token
            except FileNotFoundError:
                pass
            else:
                offset = log.publish_parts_only(a, timeout)
                ledger.write("crash", gen=a.generation, member=a.leader, last_part_offset=offset)
                os._exit(17)
        return publish_committed(log, a, timeout)

    member = Member(
        args.bootstrap,
        settings,
        topic=args.topic,
        partitions=args.partitions,
        assignment_topic=args.assignments,
        metadata=MemberMetadata(worker_id=args.worker_id),
        on_assigned=on_assigned,
        on_revoked=on_revoked,
        on_fenced=on_fenced,
        publisher=publisher,
    )
    member_box.append(member)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ledger.write("started")
    member.start()
    period = args.work_ms / 1000.0
    coordinator = None
    while not stop.wait(period):
        if member.fatal_error is not None:
            break
        if member.coordinator != coordinator:
            coordinator = member.coordinator
            if coordinator is not None:
                ledger.write("coordinator", node=coordinator.node_id, port=coordinator.port)
        # A worker would start tasks only of partitions it owns right now.
        with held_lock:
            owned = [p for p in held["parts"] if member.owns(p)]
            if owned:
                ledger.write("work", parts=owned, epoch=held["epoch"], gen=held["gen"])
    member.close(timeout=60)
    ledger.write("closed", state=member.state.value, fatal=member.fatal_error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
