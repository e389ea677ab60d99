"""Decisions are stored before they are published, so that each version is published once, with
one content.

Publishing first and storing the server state after left two faults to a worker killed in between:
the replay published the version again, and, cut into other batches, could give the same version
other contents. Now enforce stores a server's new decision in the server's own table value, beside
its state (one changelog record: both or neither), and waits until the broker has that record;
then it publishes the decision and stores the state again without it. A worker that finds a
decision left in a stored value (the previous owner stopped in between) publishes it, unless it is
at the end of its mail.decisions partition already, before anything else. The replayed
observations change nothing, since the stored states hold them already.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from pipeline import kafka_clients
from pipeline.domain.policy import ServerState
from pipeline.settings import Settings
from pipeline.streaming.compacted import is_tombstone

# One record of mail.decisions: key (the server id) and the Avro value, as bytes.
Record = tuple[bytes, bytes]


@dataclass
class StoredServer:
    """The value of the server-state table: the policy state, and decisions not known to be published."""

    state: ServerState
    unpublished: list[Record] = field(default_factory=list)

    @classmethod
    def decode(cls, data: bytes) -> StoredServer:
        stored = orjson.loads(data)
        unpublished = [(bytes.fromhex(key), bytes.fromhex(value)) for key, value in stored.pop("unpublished", ())]
        return cls(ServerState.from_json(stored), unpublished)

    def encode(self) -> bytes:
        stored = self.state.to_json()
        if self.unpublished:
            stored["unpublished"] = [[key.hex(), value.hex()] for key, value in self.unpublished]
        return orjson.dumps(stored)


def not_yet_published(left_over: list[Record], tail: list[Record]) -> list[Record]:
    """The left-over records that `tail` (the newest records of their partition) does not hold."""
    published = set(tail)
    return [record for record in left_over if record not in published]


async def tails(settings: Settings, topic: str, records: list[Record]) -> list[Record]:
    """The newest records of the mail.decisions partitions `records` go to: as many from each as
    went there, and a few more. Kafka's default partitioner places a key as Faust's producer does."""
    consumer = AIOKafkaConsumer(**kafka_clients.options(settings, enable_auto_commit=False))
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
                # A tombstone is no decision, and says nothing of whether a left-over one of its key went out.
                tail.extend((record.key or b"", record.value) for record in fetched if not is_tombstone(record.value))
        return tail
    finally:
        await consumer.stop()

