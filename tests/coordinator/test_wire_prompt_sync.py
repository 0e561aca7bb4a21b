"""`GroupClient.answers_syncs_promptly` against the real brokers: Apache Kafka 4 offers
ConsumerGroupHeartbeat (so the follow-up rejoin of a move waits PROMPT_SETTLE), Tansu does
not (FOLLOWUP_SETTLE: it answers followers' SyncGroups on a tick)."""

from __future__ import annotations

from ringleader.coordinator.wire import GroupClient


def test_kafka_is_known_to_answer_syncs_at_once_and_tansu_is_not(
    broker_kind: str, broker: str, unique_name: str
) -> None:
    client = GroupClient(broker, unique_name)
    try:
        client.find_coordinator(10.0)
        assert client.answers_syncs_promptly() is (broker_kind == "kafka")
    finally:
        client.close()
