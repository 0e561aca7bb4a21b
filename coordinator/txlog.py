"""Write and read two-phase-committed transactions on a one-partition topic (confluent-kafka).

The writer produces every part, waits until all are acknowledged (acks=all, idempotent),
and only then produces the commit record: a commit can never precede a missing part. The
reader assigns partition 0 directly (no consumer group, nothing committed) and feeds each
record to a ``TxAssembler``. Correctness rests on the 2PC records alone, not on broker
transactions or compaction (Tansu shows aborted records and never compacts).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ringleader import logs
from ringleader.coordinator.errors import RingleaderError
from ringleader.coordinator.topics import ensure_topic
from ringleader.coordinator.twophase import (
    COMMIT,
    Applied,
    CommitRecord,
    Inconsistent,
    Outcome,
    TxAssembler,
    Unseen,
    commit_key,
    decode_commit,
    encode_commit,
    encode_parts,
    part_key,
)
from ringleader.security import KafkaSecurity

__all__ = ["TxLogError", "TxLogReader", "TxLogWriter", "ensure_topic", "peek_commit"]

LOG_PARTITION = 0


class TxLogError(RingleaderError):
    """Writing or reading the transaction log failed; ``retriable`` says if retrying may help."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class TxLogWriter:
    """Writes transactions of one ``kind`` to partition 0 of ``topic``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        kind: str,
        producer_config: Mapping[str, str] | None = None,
        *,
        security: KafkaSecurity | None = None,
    ) -> None:
        part_key(kind, "x", "x")  # validates kind
        self.topic = topic
        self.kind = kind
        config: dict[str, Any] = {
            **logs.librdkafka(),
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
        }
        config.update(_security_config(security))
        config.update(producer_config or {})
        self._producer = Producer(config)

    def write(
        self, txid: str, parts: Mapping[str, bytes], timeout: float, *, commit: bool = True
    ) -> int:
        """Write all parts, then (if ``commit``) the commit record; return the commit's offset.

        With ``commit=False`` only the parts are written (a writer dying before its commit)
        and the offset of the last part is returned (-1 for no parts).
        """
        deadline = time.monotonic() + timeout
        ckey = commit_key(txid)  # validates txid before anything is written
        offsets = self._send(encode_parts(self.kind, txid, parts), deadline)
        if not commit:
            return max(offsets, default=-1)
        value = encode_commit(self.kind, parts, first_offset=min(offsets, default=-1))
        return self._send([(ckey, value)], deadline)[0]

    def write_parts_only(self, txid: str, parts: Mapping[str, bytes], timeout: float) -> int:
        """Write the parts and no commit (for tests of a writer crashing mid-transaction)."""
        return self.write(txid, parts, timeout, commit=False)

    def _send(self, records: list[tuple[str, bytes]], deadline: float) -> list[int]:
        offsets = [-1] * len(records)
        errors: list[KafkaError] = []
        acked = 0

        def on_delivery(i: int) -> Callable[[KafkaError | None, Message], None]:
            def cb(err: KafkaError | None, msg: Message) -> None:
                nonlocal acked
                if err is not None:
                    errors.append(err)
                else:
                    offsets[i] = msg.offset() or 0
                    acked += 1

            return cb

        for i, (key, value) in enumerate(records):
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=value,
                        key=key,
                        partition=LOG_PARTITION,
                        on_delivery=on_delivery(i),
                    )
                    break
                except BufferError as e:  # local queue full: let deliveries drain
                    if time.monotonic() >= deadline:
                        raise TxLogError(
                            "producer queue full until deadline", retriable=True
                        ) from e
                    self._producer.poll(0.05)
                except KafkaException as e:
                    raise TxLogError(f"cannot produce to {self.topic!r}: {e}") from e
        left = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if errors:
            raise TxLogError(
                f"delivery to {self.topic!r} failed: {errors[0]}",
                retriable=bool(errors[0].retriable()),
            )
        if left or acked != len(records):
            raise TxLogError(
                f"{len(records) - acked} records to {self.topic!r} unacknowledged at the deadline",
                retriable=True,
            )
        return offsets

    def close(self, timeout: float = 5.0) -> None:
        self._producer.flush(timeout)


def _security_config(security: KafkaSecurity | None) -> dict[str, str]:
    return security.librdkafka_config() if security is not None else {}


def _consumer(bootstrap: str, fetch_wait_ms: int, security: KafkaSecurity | None) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            **_security_config(security),
            **logs.librdkafka(),
            # librdkafka insists on a group id; with assign() no group is ever joined.
            "group.id": f"ringleader-txlog-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # A fetch parked at the log's end is answered only after this wait on Tansu even
            # when data arrives, and a seek waits for it on both brokers: keep it short.
            "fetch.wait.max.ms": fetch_wait_ms,
        }
    )


def peek_commit(
    bootstrap: str,
    topic: str,
    kind: str,
    offset: int,
    timeout: float,
    *,
    security: KafkaSecurity | None = None,
) -> CommitRecord | None:
    """Decode the commit record of ``kind`` at ``offset`` with a short-lived consumer.

    Returns None if the record there is not such a commit. Used to find where a
    transaction's parts begin (``CommitRecord.first_offset``) without reading the log.
    """
    consumer = _consumer(bootstrap, 100, security)
    try:
        consumer.assign([TopicPartition(topic, LOG_PARTITION, max(offset, 0))])
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TxLogError(f"{topic!r}: offset {offset} not readable", retriable=True)
            msg = consumer.poll(min(remaining, 0.5))
            if msg is None or msg.error() is not None or msg.offset() is None:
                continue
            if msg.offset() != offset:  # no record at that offset (e.g. a control record)
                return None
            key, value = msg.key(), msg.value()
            if key is None or not bytes(key).startswith(f"{COMMIT}/".encode()):
                return None
            try:
                rec = decode_commit(value or b"")
            except ValueError:
                return None
            return rec if rec.kind == kind else None
    finally:
        consumer.close()


class TxLogReader:
    """Reads partition 0 of ``topic`` from ``start_offset`` into a ``TxAssembler``.

    Decided transactions are remembered by commit offset (the identity to look up; txids
    such as generations may repeat) and the latest per txid, both bounded by ``keep``.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        kind: str,
        *,
        start_offset: int = 0,
        max_pending: int = 10_000,
        keep: int = 1024,
        fetch_wait_ms: int = 100,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.topic = topic
        self.kind = kind
        self._max_pending = max_pending
        self.assembler = TxAssembler(kind, max_pending=max_pending, start_offset=start_offset)
        self._keep = keep
        self._by_offset: OrderedDict[int, Applied | Inconsistent | Unseen] = OrderedDict()
        self._applied: OrderedDict[str, Applied] = OrderedDict()
        self._consumer = _consumer(bootstrap, fetch_wait_ms, security)
        self._consumer.assign([TopicPartition(topic, LOG_PARTITION, max(start_offset, 0))])
        self._closed = False

    @property
    def position(self) -> int:
        """Offset of the next record to read."""
        return self.assembler.position

    def read_until(self, offset: int, timeout: float) -> list[Outcome]:
        """Consume until the record at ``offset`` has been read; return what was decided.

        Raises ``TxLogError`` (retriable) if the deadline passes first; outcomes read before
        that are still recorded for ``applied``/``outcome_at``.
        """
        deadline = time.monotonic() + timeout
        out: list[Outcome] = []
        last_error: KafkaError | None = None
        while self.assembler.position <= offset:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TxLogError(
                    f"{self.topic!r}: offset {offset} not reached within {timeout}s "
                    f"(at {self.assembler.position}; last error: {last_error})",
                    retriable=True,
                )
            first = self._consumer.poll(min(remaining, 0.5))
            batch = [first] if first is not None else []
            if batch:  # drain what librdkafka already fetched without waiting
                batch.extend(self._consumer.consume(num_messages=1000, timeout=0))
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise TxLogError(f"reading {self.topic!r} failed: {err}")
                    # e.g. UNKNOWN_TOPIC_OR_PART while the topic is being created: retry
                    # until the deadline, which reports the last error seen.
                    last_error = err
                    continue
                off = msg.offset()
                if off is None:
                    continue
                for outcome in self.assembler.feed(msg.key(), msg.value(), off):
                    self._record(outcome)
                    out.append(outcome)
        return out

    def end_offset(self, timeout: float) -> int:
        """The partition's high watermark: the offset the next written record will get."""
        try:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, LOG_PARTITION), timeout=timeout, cached=False
            )
        except KafkaException as e:
            raise TxLogError(f"{self.topic!r}: no watermark: {e}", retriable=True) from e
        return int(high)

    def read_available(self, timeout: float) -> list[Outcome]:
        """Read everything written before this call."""
        deadline = time.monotonic() + timeout
        high = self.end_offset(timeout)
        if high <= self.assembler.position:
            return []
        return self.read_until(high - 1, max(0.0, deadline - time.monotonic()))

    def seek(self, offset: int) -> None:
        """Continue reading at ``offset``; buffered parts are dropped (their context is lost).

        Outcomes already decided stay available to ``applied``/``outcome_at``.
        """
        self.assembler = TxAssembler(self.kind, max_pending=self._max_pending, start_offset=offset)
        self._consumer.assign([TopicPartition(self.topic, LOG_PARTITION, max(offset, 0))])

    def _record(self, outcome: Outcome) -> None:
        if isinstance(outcome, Applied | Inconsistent | Unseen):
            self._by_offset[outcome.commit_offset] = outcome
            while len(self._by_offset) > self._keep:
                self._by_offset.popitem(last=False)
        if isinstance(outcome, Applied):
            self._applied.pop(outcome.txid, None)
            self._applied[outcome.txid] = outcome
            while len(self._applied) > self._keep:
                self._applied.popitem(last=False)

    def applied(self, txid: str) -> Applied | None:
        """The latest applied transaction with this txid read so far, if any."""
        return self._applied.get(txid)

    def outcome_at(self, commit_offset: int) -> Applied | Inconsistent | Unseen | None:
        """What the commit record at ``commit_offset`` decided, if it has been read.

        ``Unseen`` means its parts start before where this reader started: ``seek`` to its
        ``first_offset`` and read again to judge it.
        """
        return self._by_offset.get(commit_offset)

    def expire(self, older_than_offset: int) -> int:
        """Drop uncommitted parts below an offset; returns how many transactions went."""
        return len(self.assembler.expire(older_than_offset))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()
