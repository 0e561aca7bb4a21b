"""The chaos ledger: what the ledger app's runs did, kept in a bookkeeping Redis of its own.

Every step of a `ledger` task appends one line `<task id> <run id> <step> <time>` to
`<ns>:chaos:steps` after its `ctx.checkpoint()`, and a finished run appends `done`; the
runner reads the lines back into `Run`s for `report.judge`. The bookkeeping Redis is not the
workers' Redis, so a scenario that kills the workers' Redis cannot lose the evidence.

Fault switches are keys the runner sets and the app takes once (GETDEL), so exactly one
process acts on each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ringleader.chaos.report import Run

__all__ = ["LedgerRun", "flag_key", "parse_runs", "steps_key", "torn_key"]

DONE = "done"
DIE_BEFORE_COMMIT = "die-before-commit"  # the flag that arms the leader's torn commit
SERVICE = "chaos-echo"  # the downstream service the app calls when a registry is set


def steps_key(namespace: str) -> str:
    return f"{namespace}:chaos:steps"


def torn_key(namespace: str) -> str:
    """Generations a leader published the parts of and died before committing."""
    return f"{namespace}:chaos:torn"


def flag_key(namespace: str, name: str) -> str:
    return f"{namespace}:chaos:flag:{name}"


@dataclass(frozen=True, slots=True)
class LedgerRun:
    run: Run
    done_at: float | None  # when it returned; None: stopped before its end (a fault)


def parse_runs(lines: Iterable[bytes | str]) -> list[LedgerRun]:
    """The runs the ledger lines describe, in order of their first line. A malformed line
    is an error: the app writes every line, so one would mean a broken ledger."""
    first: dict[tuple[str, str], float] = {}
    last: dict[tuple[str, str], float] = {}
    done: dict[tuple[str, str], float] = {}
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        parts = line.split()
        if len(parts) != 4:
            raise ValueError(f"malformed chaos ledger line: {line!r}")
        task_id, run_id, step, at_text = parts
        at = float(at_text)
        key = (task_id, run_id)
        first.setdefault(key, at)
        last[key] = max(at, last.get(key, at))
        if step == DONE:
            done[key] = at
    return [
        LedgerRun(
            Run(task_id, run_id, started, last[(task_id, run_id)]), done.get((task_id, run_id))
        )
        for (task_id, run_id), started in first.items()
    ]
