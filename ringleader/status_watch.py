"""`ringleader status --watch`: the status report, refreshed every few seconds.

On a terminal it is a live table (rich) redrawn in place: the group's state, generation and
leader, one row per member (its partitions, their lag, the tasks it runs), the fleet's
totals with tasks finished per second, dead letters and breakers. On a pipe it prints each
refresh as the plain `status` text (or, with --json, one JSON object a line), so a log or a
script gets the same numbers without control codes.

Tasks per second come from the fleet's committed offsets (`Fleet.committed`): every task
finished and committed moves one offset, so the difference between two refreshes over the
time between them is the fleet's finishing rate. A broker that cannot be reached is shown
and retried at the next refresh: a person watching a restart wants the view to come back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ringleader.errors import BrokerUnavailableError
from ringleader.status import StatusReport
from ringleader.status_text import age, format_text

__all__ = ["Rate", "member_lag", "render", "watch"]


@dataclass(slots=True)
class Rate:
    """Tasks finished per second between the last two reports (None until there are two)."""

    last: tuple[float, int] | None = None
    per_second: float | None = None

    def update(self, now: float, committed: int) -> float | None:
        if self.last is not None and now > self.last[0]:
            t0, c0 = self.last
            # A namespace recreated, or a lane's offsets reset: no negative rates.
            self.per_second = max(0, committed - c0) / (now - t0)
        self.last = (now, committed)
        return self.per_second


def member_lag(report: StatusReport) -> dict[str, int]:
    """Member id -> lag summed over its partitions, on every priority level's topic."""
    by_partition: dict[int, int] = {}
    for pl in report.lag:
        by_partition[pl.partition] = by_partition.get(pl.partition, 0) + pl.lag
    return {
        m.member_id: sum(by_partition.get(p, 0) for p in m.partitions or []) for m in report.members
    }


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _leader(report: StatusReport) -> str:
    """The leader by worker id when its member names one (member ids are long)."""
    named = {m.member_id: m.worker_id for m in report.members if m.worker_id}
    return named.get(report.leader or "", report.leader) or "-"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


def render(report: StatusReport, rate: float | None) -> RenderableType:
    """The live view of one report."""
    gen = _dash(report.generation)
    if report.assignment_source == "log":
        gen += " (from the log)"
    head = Text.assemble(
        ("ringleader ", "bold"), f"{report.namespace}   group {report.group}   ",
        ("state ", "dim"), f"{report.group_state or '-'}   ",
        ("generation ", "dim"), f"{gen}   ", ("leader ", "dim"), _leader(report),
        ("   protocol ", "dim"), report.protocol or "-",
    )  # fmt: skip
    members = Table(title=None, expand=False, show_edge=False)
    for col in ("worker", "member", "host", "partitions", "lag", "running", "longest"):
        members.add_column(col, justify="right" if col in ("lag", "running") else "left")
    lags = member_lag(report)
    for m in report.members:
        parts = _dash(None if m.partitions is None else ",".join(map(str, m.partitions)))
        if m.revoking:
            parts += f" (revoking {','.join(map(str, m.revoking))})"
        lr = m.longest_running
        longest = "-" if lr is None else f"{age(lr.age)} {lr.name}"
        members.add_row(
            m.worker_id or "?", m.member_id[-12:], m.client_host, parts,
            str(lags.get(m.member_id, 0)), _dash(m.running), longest,
        )  # fmt: skip
    f = report.fleet
    totals = Text.assemble(
        ("members ", "dim"), f"{len(report.members)}   ",
        ("lag ", "dim"), f"{_dash(report.total_lag)}   ",
        ("tasks/s ", "dim"), f"{_rate(rate)}   ",
        ("in flight ", "dim"), f"{_dash(f.in_flight if f else None)}   ",
        ("dead letters ", "dim"), f"{_dash(report.dead_letters)}   ",
        ("instances ", "dim"), str(len(report.instances)),
    )  # fmt: skip
    shown: list[RenderableType] = [head, members, totals]
    if report.breakers:
        breakers = Table("breaker", "state", "failures", show_edge=False)
        for b in report.breakers:
            name = b["service"] + (f"/{b['instance']}" if b["instance"] else "")
            style = "red" if b["state"] == "open" else ""
            breakers.add_row(name, Text(b["state"], style=style), str(b["failures"]))
        shown.append(breakers)
    shown.extend(Text(f"! {e}", style="red") for e in report.errors)
    return Group(*shown)


def _plain(report: StatusReport, rate: float | None) -> str:
    return f"{format_text(report)}\ntasks/s {_rate(rate)}\n"


def watch(
    gather: Callable[[], StatusReport],
    *,
    out: TextIO,
    interval: float = 2.0,
    count: int | None = None,
    as_json: bool = False,
    jsonable: Callable[[object], object] = repr,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Refresh until Ctrl-C (or `count` refreshes); returns the exit code (0)."""
    console = Console(file=out)
    live = console.is_terminal and not as_json
    rate = Rate()
    n = 0
    view = Live(console=console, auto_refresh=False, transient=False) if live else None
    try:
        if view is not None:
            view.start()
        while count is None or n < count:
            started = clock()
            shown: Any
            try:
                report = gather()
            except BrokerUnavailableError as e:
                shown = Text(f"! {e} (retrying every {interval:g}s)", style="red")
                text = f"! {e}\n"
                obj: dict[str, Any] = {"error": str(e)}
            else:
                per_s = rate.update(started, report.fleet.committed if report.fleet else 0)
                shown = render(report, per_s)
                text, obj = _plain(report, per_s), report.to_json()
            n += 1
            if view is not None:
                view.update(shown, refresh=True)
            elif as_json:
                print(json.dumps(obj, default=jsonable), file=out, flush=True)
            else:
                print(text, file=out, flush=True)
            if count is None or n < count:
                sleep(max(0.0, interval - (clock() - started)))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a person stops watching
    finally:
        if view is not None:
            view.stop()
    return 0
