"""Decisions are stored before they are published, so that each version is published once, with
one content, and a batch's new decisions go out together.

Publishing first and storing the server state after left two faults to a worker killed in between:
the replay published the version again, and, cut into other batches, could give the same version
other contents. So enforce first writes a batch's new decisions, each with its server's new state,
into a few outbox values of the server-state table (keys under OUTBOX, up to CHUNK_BYTES each), and
waits until the broker has them; then it writes every changed server's state once and publishes
the decisions, both at once, and waits for both; then it deletes the outbox values. A worker that
finds outbox values left (the previous owner stopped in between) writes their states, publishes
the decisions its mail.decisions partition does not end with already, and deletes them, before
anything else. The replayed observations change nothing, since the stored states hold them.

Before the outbox, a state was stored with its new decision in the value (`unpublished`), then
stored again without: two writes per decided server. Values written so are still published.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from pipeline import kafka_clients
from pipeline.contracts.compacted import is_tombstone
from pipeline.domain.policy import ServerState
from pipeline.settings import Settings

# One record of mail.decisions: key (the server id) and the Avro value, as bytes.
Record = tuple[bytes, bytes]
# Server ids never start with NUL, and RocksDB sorts these keys before them: one seek finds them.
OUTBOX = b"\0outbox/"
CHUNK_BYTES = 512 * 1024


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


def outbox_key(partition: int, n: int | None = None) -> bytes:
    """The key of a partition's `n`th outbox value, or the prefix of them all."""
    return OUTBOX + (b"%d/" % partition if n is None else b"%d/%d" % (partition, n))


def outbox_values(decided: list[tuple[ServerState, Record]]) -> list[bytes]:
    """Outbox values of at most about CHUNK_BYTES: each decision with its server's new state."""
    values: list[bytes] = []
    entries: list[bytes] = []
    size = 0
    for state, (key, value) in decided:
        entry = orjson.dumps([key.hex(), state.to_json(), value.hex()])
        if entries and size + len(entry) > CHUNK_BYTES:
            values.append(b"[" + b",".join(entries) + b"]")
            entries, size = [], 0
        entries.append(entry)
        size += len(entry) + 1
    if entries:
        values.append(b"[" + b",".join(entries) + b"]")
    return values


def outbox_entries(value: bytes) -> list[tuple[ServerState, Record]]:
    return [(ServerState.from_json(state), (bytes.fromhex(key), bytes.fromhex(record)))
            for key, state, record in orjson.loads(value)]


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

