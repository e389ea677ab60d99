"""Decisions are stored before they are published, so that each version is published once, with
one content.

Publishing first and storing the server state after left two faults to a worker killed in between:
the replay published the version again, and, cut into other batches, could give the same version
other contents. Now enforce writes a batch's new decisions to an outbox key of the server-state
table, with the states, and waits until the changelog has them; then it publishes them and deletes
the outbox key. A worker that finds an outbox key left over (the previous owner of the partition
stopped between storing and deleting) publishes those of its decisions that are not at the end of
their mail.decisions partition yet, before anything else. The replayed observations change nothing,
since the stored states hold them already.
"""
from __future__ import annotations

from collections.abc import Iterable

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from pipeline.streaming.tables import TableBatch

# One record of mail.decisions: key (the server id) and the Avro value, as bytes.
Record = tuple[bytes, bytes]


def outbox_key(partition: int) -> bytes:
    """The outbox of one partition of the server-state table (NUL first: no server id starts so)."""
    return b"\0unpublished-decisions/%d" % partition


def _encoded(records: Iterable[Record]) -> list[list[str]]:
    return [[key.hex(), value.hex()] for key, value in records]


def _decoded(stored: list[list[str]]) -> list[Record]:
    return [(bytes.fromhex(key), bytes.fromhex(value)) for key, value in stored]


def not_yet_published(left_over: list[Record], tail: list[Record]) -> list[Record]:
    """The left-over records that `tail` (the newest records of their partition) does not hold."""
    published = set(tail)
    return [record for record in left_over if record not in published]


class DecisionOutbox:
    """The outbox keys of one enforce batch."""

    def __init__(self, table: faust.Table):
        self.batch = TableBatch(table)
        self._events: dict[int, faust.EventT] = {}
        self.pending: dict[int, list[Record]] = {}

    def left_over(self, event: faust.EventT) -> list[Record]:
        """What the outbox of `event`'s partition still holds; read once per partition and batch."""
        partition = event.message.partition
        if partition in self._events:
            return []
        self._events[partition] = event
        stored = self.batch.get(outbox_key(partition), event)
        if not stored:
            return []
        self.pending[partition] = _decoded(stored)
        return self.pending[partition]

    def store(self, partition: int, records: list[Record]) -> None:
        """Keep `records` in the partition's outbox until `published`."""
        self.pending[partition] = records
        self.batch.put(outbox_key(partition), _encoded(records), self._events[partition])

    def published(self) -> None:
        """Empty the outboxes read or stored since the last call (written at the next flush)."""
        for partition in self.pending:
            self.batch.delete(outbox_key(partition), self._events[partition])
        self.pending = {}


async def tails(bootstrap_servers: str, topic: str, records: list[Record]) -> list[Record]:
    """The newest records of the mail.decisions partitions `records` go to: as many from each as
    went there, and a few more. Kafka's default partitioner places a key as Faust's producer does."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()
        partitions = sorted(metadata.partitions_for_topic(topic) or ())
        if not partitions:
            raise RuntimeError(f"{topic} has no partitions in the broker's metadata")
        place = DefaultPartitioner()
        wanted: dict[TopicPartition, int] = {}
        for key, _ in records:
            tp = TopicPartition(topic, place(key, partitions, partitions))
            wanted[tp] = wanted.get(tp, 0) + 1
        consumer.assign(list(wanted))
        ends = await consumer.end_offsets(list(wanted))
        starts = await consumer.beginning_offsets(list(wanted))
        for tp, count in wanted.items():
            consumer.seek(tp, max(starts[tp], ends[tp] - 2 * count - 10))
        tail: list[Record] = []
        while [tp for tp in wanted if await consumer.position(tp) < ends[tp]]:
            for fetched in (await consumer.getmany(timeout_ms=1000)).values():
                tail.extend((record.key or b"", record.value or b"") for record in fetched)
        return tail
    finally:
        await consumer.stop()

