"""`ringleader status` built from a constructed generation and running data (pure): the
rebalance protocol, pending revocations, and per member the partitions owned, held and the
tasks running, in the text and the JSON."""

from __future__ import annotations

import json

from ringleader.coordinator.assignment import Assignment, AssignmentPointer
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.groupview import (
    Described,
    GroupView,
    LongestRun,
    MemberView,
    fill_view,
    with_activity,
)
from ringleader.status import PartitionLag, StatusReport, format_text
from ringleader.worker.ledger import RunningTask

M1 = "ringleader-w1-00000000-0000-0000-0000-000000000001"
M2 = "ringleader-w2-00000000-0000-0000-0000-000000000002"
M3 = "x-member-3"  # a client id that names no worker

COOP = Assignment(
    7,
    M1,
    {M1: [0, 1], M2: [3], M3: []},
    "cooperative",
    workers={M1: "w1", M2: "w2", M3: "w3"},
    revoking={M1: [2]},
    static=frozenset({M2}),
)


def described(member_id: str, worker_id: str | None = None, host: str = "/10.0.0.1") -> Described:
    meta = b"" if worker_id is None else MemberMetadata(worker_id=worker_id).encode()
    return (member_id, host, meta, b"")


def live_view(assignment: Assignment, members: list[Described]) -> GroupView:
    view = GroupView(state="Stable", assignment_source="live")
    pointer = AssignmentPointer(assignment.generation, 42, assignment.leader)
    fill_view(view, members, pointer, assignment)
    return view


def test_the_generation_gives_protocol_revocations_and_per_member_ownership() -> None:
    # w1 describes its metadata; w2 and the third do not (as on Tansu): their worker ids come
    # from the assignment's record, not from guessing at the member id.
    view = live_view(COOP, [described(M2, host=""), described(M1, "w1"), described(M3)])
    assert view.generation == 7 and view.leader == M1
    assert view.protocol == "cooperative" and view.revoking == {M1: [2]}
    m1, m2, m3 = view.members
    assert (m1.member_id, m1.worker_id, m1.partitions, m1.revoking) == (M1, "w1", [0, 1], [2])
    assert not m1.static
    assert (m2.worker_id, m2.partitions, m2.revoking, m2.static) == ("w2", [3], [], True)
    assert (m3.worker_id, m3.partitions) == ("w3", [])
    # Nothing from Redis yet: unknown, not zero.
    assert all(m.running is None and m.held is None for m in view.members)


def test_with_no_live_member_the_last_generation_names_its_workers() -> None:
    view = GroupView(state="Empty", assignment_source="log")
    fill_view(view, [], None, COOP)
    assert [(m.member_id, m.worker_id, m.partitions) for m in view.members] == [
        (M1, "w1", [0, 1]),
        (M2, "w2", [3]),
        (M3, "w3", []),
    ]
    assert view.members[0].revoking == [2] and view.members[1].static


def test_an_eager_generation_has_no_revocations_and_a_member_id_still_names_its_worker() -> None:
    eager = Assignment(3, M1, {M1: [0, 1, 2]})  # an older leader's parts: eager, no workers
    view = live_view(eager, [described(M1)])
    assert view.protocol == "eager" and view.revoking == {}
    assert view.members[0].worker_id == "w1"  # from the broker's member id


def test_no_assignment_read_leaves_protocol_unknown() -> None:
    view = GroupView(state="Stable", assignment_source="live")
    fill_view(view, [described(M1, "w1")], AssignmentPointer(4, 9, M1), None)
    assert view.generation == 4 and view.protocol is None and view.revoking == {}
    assert view.members == [MemberView(M1, "w1", "/10.0.0.1", None)]


def test_activity_counts_runs_and_ages_the_longest() -> None:
    members = live_view(COOP, [described(M1, "w1"), described(M2, "w2"), described(M3)]).members
    running = {
        "w1": [RunningTask("b", "build", 100.0), RunningTask("a", "deploy", 40.0)],
        "w2": [],
    }
    out = with_activity(members, running, {"w1": [0, 1, 2], "w2": [3]}, now=160.0)
    w1, w2, w3 = out
    assert w1.running == 2 and w1.longest_running == LongestRun("a", "deploy", 120.0)
    assert w1.held == [0, 1, 2]
    assert w2.running == 0 and w2.longest_running is None and w2.held == [3]
    # w3 was not asked about (not in the map): unknown, as is what it holds.
    assert w3.running is None and w3.held is None
    # A clock behind a start never shows a negative age.
    [late] = with_activity(members[:1], {"w1": [RunningTask("c", "x", 200.0)]}, {}, now=150.0)
    assert late.longest_running == LongestRun("c", "x", 0.0)


def test_activity_unread_leaves_running_unknown() -> None:
    members = [MemberView(M1, "w1", "", [0]), MemberView("anonymous", None, "", [1])]
    out = with_activity(members, None, {"w1": [0]}, now=0.0)
    assert [(m.running, m.held) for m in out] == [(None, [0]), (None, None)]
    # A member without a worker id is never matched to someone's runs.
    out = with_activity(members, {"w1": []}, {}, now=0.0)
    assert [m.running for m in out] == [0, None]


def report() -> StatusReport:
    view = live_view(COOP, [described(M1, "w1"), described(M2, "w2"), described(M3)])
    running = {"w1": [RunningTask("t-long", "deploy", 1000.0)], "w2": [], "w3": []}
    held = {"w1": [0, 1, 2], "w2": [3], "w3": []}
    r = StatusReport("ns", "ns.workers", group_state="Stable", generation=7, leader=M1)
    r.assignment_source, r.protocol, r.revoking = "live", view.protocol, view.revoking
    r.members = with_activity(view.members, running, held, now=1125.5)
    r.lag = [PartitionLag(0, 10, 8, 2)]
    r.total_lag, r.dead_letters = 2, 0
    return r


def test_text_shows_protocol_revocations_holdings_and_runs() -> None:
    text = format_text(report())
    lines = text.splitlines()
    assert lines[1] == f"state Stable   generation 7   leader {M1}   protocol cooperative"
    assert lines[2] == "members (3):"
    assert lines[3] == (
        f"  w1 [{M1}] /10.0.0.1  partitions 0,1  revoking 2  holds 0,1,2"
        "  running 1 (longest 2m05s: deploy t-long)"
    )
    assert lines[4] == f"  w2 [{M2}] /10.0.0.1  partitions 3  running 0  static"
    assert lines[5] == f"  w3 [{M3}] /10.0.0.1  partitions (none)  running 0"
    assert lines[6] == "pending revocations: p2 (w1)"
    assert "lag (total 2):" in lines and "dead letters: 0" in lines


def test_text_without_the_new_facts_reads_as_before() -> None:
    r = StatusReport("ns", "ns.workers")
    r.members = [MemberView(M1, "w1", "/h", None)]
    lines = format_text(r).splitlines()
    assert lines[1] == "state -   generation -   leader -"
    assert lines[3] == f"  w1 [{M1}] /h  partitions -  running -"
    assert not any(line.startswith("pending revocations") for line in lines)
    eager = StatusReport("ns", "ns.workers", protocol="eager")
    assert "pending revocations: none" in format_text(eager).splitlines()


def test_ages_read_in_seconds_minutes_or_hours() -> None:
    def longest(age: float) -> str:
        m = MemberView(M1, "w1", "", [0], running=1, longest_running=LongestRun("t", "n", age))
        r = StatusReport("ns", "g", members=[m])
        return format_text(r).splitlines()[3].split("(longest ")[1]

    assert longest(4.25) == "4.2s: n t)"
    assert longest(61) == "1m01s: n t)"
    assert longest(2 * 3600 + 3 * 60 + 59) == "2h03m: n t)"


def test_json_keeps_the_old_keys_and_adds_the_new() -> None:
    data = json.loads(json.dumps(report().to_json()))
    old = {"namespace", "group", "group_state", "generation", "leader", "assignment_source"}
    old |= {"members", "lag", "total_lag", "dead_letters", "instances", "registry", "breakers"}
    old |= {"errors", "unreachable"}
    assert old <= set(data)
    assert data["protocol"] == "cooperative" and data["revoking"] == {M1: [2]}
    w1, w2, _ = data["members"]
    assert {"member_id", "worker_id", "client_host", "partitions"} <= set(w1)
    assert w1["partitions"] == [0, 1] and w1["revoking"] == [2] and w1["held"] == [0, 1, 2]
    assert w1["running"] == 1
    assert w1["longest_running"] == {"task_id": "t-long", "name": "deploy", "age": 125.5}
    assert w2["static"] is True and w2["running"] == 0 and w2["longest_running"] is None


def test_a_generation_read_off_the_log_says_whether_anyone_is_live() -> None:
    view = GroupView(state="Empty", assignment_source="log")
    fill_view(view, [], None, COOP)  # the departed members of the last generation
    r = StatusReport("ns", "g", group_state="Empty", generation=7, assignment_source="log")
    r.members = view.members
    assert "(last committed on the log; no live member)" in format_text(r)
    r.group_state = "Stable"  # Tansu: live members, but no assignments described
    assert "(last committed on the log; live)" in format_text(r)


def test_text_names_the_priority_level_of_a_lag_row() -> None:
    r = report()
    r.lag = [PartitionLag(0, 10, 8, 2), PartitionLag(0, 5, None, 5, "high")]
    r.total_lag = 7
    lines = format_text(r).splitlines()
    assert "  p0   end 10       committed 8        lag 2" in lines
    assert "  p0 high end 5        committed -        lag 5" in lines
