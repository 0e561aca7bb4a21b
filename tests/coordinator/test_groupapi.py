"""The group requests as values: they encode at every version spoken, answers decode (no broker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kafka.protocol.consumer.group import LeaveGroupResponse, OffsetFetchResponse
from kafka.protocol.metadata import FindCoordinatorResponse

from ringleader.coordinator import groupapi as api
from ringleader.coordinator.errors import CoordinatorError, ErrorCode

BUILDERS: dict[str, Callable[[int], Any]] = {
    "find": lambda v: api.find_coordinator_request(v, "g"),
    "join": lambda _v: api.join_request(
        "g",
        member_id="",
        group_instance_id=None,
        session_timeout_ms=10000,
        rebalance_timeout_ms=30000,
        protocols=[("roundrobin", b"meta")],
        reason="start",
    ),
    "sync": lambda _v: api.sync_request(
        "g",
        generation=1,
        member_id="m1",
        group_instance_id=None,
        protocol_name="roundrobin",
        assignments={"m1": b"pointer"},
    ),
    "heartbeat": lambda _v: api.heartbeat_request(
        "g", generation=1, member_id="m1", group_instance_id=None
    ),
    "leave": lambda v: api.leave_request(v, "g", member_id="m1", group_instance_id=None),
    "commit": lambda _v: api.offset_commit_request(
        "g",
        generation=1,
        member_id="m1",
        group_instance_id=None,
        topic="t",
        offsets={1: 5, 0: 3},
        metadata=None,
    ),
    "fetch": lambda _v: api.offset_fetch_request("g", topic="t", partitions=[0, 1]),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_request_encodes_at_every_version_spoken(name: str) -> None:
    build = BUILDERS[name]
    cls = type(build(api.CAPS[type(build(0)).API_KEY]))
    key = int(cls.API_KEY)
    for version in range(api.FLOORS.get(key, 0), min(api.CAPS[key], cls.max_version) + 1):
        req = build(version)
        req.API_VERSION = version
        req.with_header(correlation_id=7, client_id="test")
        assert req.encode(framed=True, header=True), (name, version)


def test_find_coordinator_decodes_batched_and_single_answers() -> None:
    batched = FindCoordinatorResponse(
        coordinators=[
            FindCoordinatorResponse.Coordinator(
                key="g", node_id=3, host="h", port=9, error_code=0, error_message=None
            )
        ]
    )
    assert api.decode_find_coordinator(4, batched, "b:1") == api.CoordinatorAddress(3, "h", 9)
    single = FindCoordinatorResponse(error_code=0, node_id=2, host="k", port=8)
    assert api.decode_find_coordinator(3, single, "b:1") == api.CoordinatorAddress(2, "k", 8)
    refused = FindCoordinatorResponse(error_code=15, node_id=-1, host="", port=-1)
    with pytest.raises(CoordinatorError) as e:
        api.decode_find_coordinator(3, refused, "b:1")
    assert e.value.code is ErrorCode.COORDINATOR_NOT_AVAILABLE


def test_leave_reports_the_member_error_under_a_successful_batched_answer() -> None:
    member = LeaveGroupResponse.MemberResponse(
        member_id="m1", group_instance_id=None, error_code=25
    )
    resp = LeaveGroupResponse(error_code=0, members=[member])
    assert api.decode_leave(3, resp) is ErrorCode.UNKNOWN_MEMBER_ID
    assert api.decode_leave(1, LeaveGroupResponse(error_code=0)) is ErrorCode.NONE
    assert api.leave_request(1, "g", member_id="m1", group_instance_id=None).member_id == "m1"
    assert api.leave_request(3, "g", member_id="m1", group_instance_id="i").members[0].reason


def test_offset_fetch_group_error_raises() -> None:
    with pytest.raises(CoordinatorError) as e:
        api.decode_offset_fetch(OffsetFetchResponse(error_code=16, topics=[]), "b:1")
    assert e.value.code is ErrorCode.NOT_COORDINATOR
