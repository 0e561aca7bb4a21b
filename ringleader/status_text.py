"""`ringleader status` as text: one snapshot of a `StatusReport`, for a person."""

from __future__ import annotations

from ringleader.groupview import MemberView
from ringleader.status import StatusReport

__all__ = ["age", "format_text"]


def format_text(report: StatusReport) -> str:
    lines = [f"namespace {report.namespace}   group {report.group}"]
    gen = "-" if report.generation is None else str(report.generation)
    src = ""
    if report.assignment_source == "log":
        # members then include the generation's departed ones: the state says who is live
        empty = report.group_state in (None, "", "Empty", "Dead")
        live = "no live member" if empty or not report.members else "live"
        src = f" (last committed on the log; {live})"
    proto = "" if report.protocol is None else f"   protocol {report.protocol}"
    lines.append(
        f"state {report.group_state or '-'}   generation {gen}{src}   leader {report.leader or '-'}"
        + proto
    )
    lines.append(f"members ({len(report.members)}):")
    for m in report.members:
        parts = "-" if m.partitions is None else ",".join(map(str, m.partitions)) or "(none)"
        who = f"{m.worker_id} " if m.worker_id else ""
        lines.append(f"  {who}[{m.member_id}] {m.client_host}  partitions {parts}" + _activity(m))
    if report.protocol is not None:
        names = {m.member_id: m.worker_id or m.member_id for m in report.members}
        pending = [
            f"p{p} ({names.get(mid, mid)})" for mid, ps in report.revoking.items() for p in ps
        ]
        lines.append(f"pending revocations: {', '.join(pending) or 'none'}")
    if report.lag:
        lines.append(f"lag (total {report.total_lag}):")
        for pl in report.lag:
            c = "-" if pl.committed is None else str(pl.committed)
            where = f"p{pl.partition:<3}" if pl.level == "normal" else f"p{pl.partition} {pl.level}"
            lines.append(f"  {where} end {pl.end:<8} committed {c:<8} lag {pl.lag}")
    lines.append(f"dead letters: {'-' if report.dead_letters is None else report.dead_letters}")
    services = sorted({i["service"] for i in report.instances})
    lines.append(f"services ({len(services)}), instances ({len(report.instances)}):")
    for i in report.instances:
        lines.append(f"  {i['service']}/{i['instance']} {i['address']} {i['status']}")
    if report.breakers:
        lines.append("breakers:")
        for b in report.breakers:
            name = b["service"] + (f"/{b['instance']}" if b["instance"] else "")
            lines.append(f"  {name} {b['state']} (failures {b['failures']})")
    for e in report.errors:
        lines.append(f"! {e}")
    return "\n".join(lines)


def _activity(m: MemberView) -> str:
    """The member line's tail: revocations, what its worker holds and runs, static."""
    out = ""
    if m.revoking:
        out += f"  revoking {_parts(m.revoking)}"
    if m.held is not None and (m.revoking or m.held != sorted(m.partitions or [])):
        out += f"  holds {_parts(m.held)}"
    out += f"  running {'-' if m.running is None else m.running}"
    if m.longest_running is not None:
        lr = m.longest_running
        out += f" (longest {age(lr.age)}: {lr.name} {lr.task_id})"
    if m.static:
        out += "  static"
    return out


def _parts(ps: list[int]) -> str:
    return ",".join(map(str, ps)) or "(none)"


def age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
