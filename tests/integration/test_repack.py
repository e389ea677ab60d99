"""The repacker on the real broker: what mail.logs.raw held arrives on mail.logs.packed, partition
for partition, in order, and its raw offsets are committed once it is there."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import kafka_clients
from pipeline.contracts import packing, topics
from pipeline.contracts.avro import DEAD_LETTER
from pipeline.kafka_admin import _committed_offsets
from pipeline.streaming.repack import repack_forever
from tests.integration.conftest import _read_topic


def _raw_records(settings, lines: int) -> list:
    producer = kafka_clients.producer(settings, acks="all")
    try:
        for n in range(lines):
            producer.send(settings.topic(topics.RAW), key=b"/var/log/mail%d.log" % (n % 7),
                          value=b"Mar  7 02:09:%02d mx2 postfix/smtpd[1102]: line %d" % (n % 60, n))
        producer.send(settings.topic(topics.RAW), key=b"/var/log/ship.log", value=b"a\nb\n",
                      headers=packing.headers(1, 0))
        producer.flush()
    finally:
        producer.close()
    return _read_topic(settings, topics.RAW)


async def _repack_until(settings, records: int, patience_s: float = 60) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(repack_forever(settings, stop))
    admin = kafka_clients.admin(settings, "test")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        while True:
            committed = await asyncio.to_thread(_committed_offsets, admin, topics.repack_group(settings))
            if sum(meta.offset for meta in committed.values()) >= records:
                return
            assert loop.time() < deadline and not running.done(), f"committed {committed} of {records}"
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await running
        admin.close()


async def _read_packed(settings) -> list:
    """Every record of mail.logs.packed, read with aiokafka as the workers read it (its zstd is a
    codec kafka-python needs another library for)."""
    topic = settings.topic(topics.PACKED)
    consumer = AIOKafkaConsumer(**kafka_clients.options(settings))
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list = []
        while len(records) < sum(ends.values()):
            for messages in (await consumer.getmany(timeout_ms=5000)).values():
                records += messages
        return records
    finally:
        await consumer.stop()


def test_raw_records_arrive_repacked_in_order_on_their_partition(pipeline_env):
    settings, _ = pipeline_env
    raw = _raw_records(settings, 5_000)
    asyncio.run(_repack_until(settings, len(raw)))
    # (partition, raw offset, key, value, (first line, first offset))
    forwarded: list[tuple[int, int, bytes, bytes, tuple[int | None, int | None]]] = []
    packed = asyncio.run(_read_packed(settings))
    for record in packed:
        topic, segments = packing.repacked_segments(record.headers)
        assert topic == settings.topic(topics.RAW)
        for s in segments:
            value = record.value[s.start:s.end]
            if s.lines:  # bare lines, each with the \n the repacker added
                forwarded += [(record.partition, s.raw_offset + n, s.key.encode(), line, (None, None))
                              for n, line in enumerate(value.split(b"\n")[:-1])]
            else:
                forwarded.append((record.partition, s.raw_offset, s.key.encode(), value,
                                  (s.first_line, s.first_offset)))
    by_partition: dict[int, list[tuple]] = {}
    for partition, offset, key, value, position in forwarded:
        by_partition.setdefault(partition, []).append((offset, key, value, position))
    expected: dict[int, list[tuple]] = {}
    for record in raw:
        expected.setdefault(record.partition, []).append(
            (record.offset, record.key, record.value, packing.packed_position(record.headers) or (None, None)))
    assert by_partition == expected
    packed_records = len(packed)
    assert packed_records <= 4 * 10, f"{packed_records} repacked records for {len(raw)} raw ones"


def test_a_record_too_large_to_forward_is_a_dead_letter_and_the_records_after_it_go_on(pipeline_env):
    settings, _ = pipeline_env
    # A binary file sent as one line by a shipper whose limits were raised: compressed, the broker takes it.
    producer = kafka_clients.producer(settings, acks="all", compression_type="gzip", max_request_size=64 * 1024 * 1024)
    try:
        for value in (b"Mar  7 02:09:01 mx2 postfix/smtpd[1102]: before", b"\xff" * (5 * 1024 * 1024),
                      b"Mar  7 02:09:02 mx2 postfix/smtpd[1102]: after"):
            producer.send(settings.topic(topics.RAW), key=b"/var/log/mail.log", value=value)
        producer.flush()
    finally:
        producer.close()
    raw = _read_topic(settings, topics.RAW)
    asyncio.run(_repack_until(settings, len(raw)))
    packed = asyncio.run(_read_packed(settings))
    assert b"".join(record.value for record in packed) == b"".join(
        r.value + b"\n" for r in raw if len(r.value) < 1024)
    [letter] = [DEAD_LETTER.decode(record.value) for record in _read_topic(settings, topics.DEAD_LETTERS)]
    big = raw[1]
    assert (letter["topic"], letter["partition"], letter["topic_offset"]) == (big.topic, big.partition, big.offset)
    assert letter["reason"] == (f"a record of {5 * 1024 * 1024} bytes from /var/log/mail.log is larger than the "
                                "repacker forwards (3145728 bytes): not parsed; its first 65536 bytes kept")
    assert letter["raw"] == b"\xff" * 65536 and letter["source"] == "/var/log/mail.log"
