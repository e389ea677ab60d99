"""Reading a topic with kafka-python up to the ends its partitions have now: mail.decisions for
`patchgate decisions`, the notifier and the MTA side, a table's changelog and mail.notices for
housekeeping, what the shipper sent for its read-back. Every such read follows these rules:

- The ends are those the partitions have when the read starts. A record written later is left
  for whoever reads on with the same consumer, which stands at the ends afterwards.
- A partition is at its end when the consumer's position reaches it, not when a record at the
  offset before it was read: compaction and transaction markers leave offsets without records.
- A read that moves no further for its timeout raises TimeoutError, naming the topic and the
  partitions short of their end; a long topic that keeps coming is read whole.
- A compacted topic is folded with contracts.compacted: a tombstone deletes the records of its
  key read before it, as compaction will. A record that is not what the topic holds is logged
  and skipped (`folded`): one bad record must not stop an MTA or the notifier.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import UnknownTopicOrPartitionError

from pipeline.contracts.avro import AvroDecodeError
from pipeline.contracts.compacted import Compacted

log = logging.getLogger(__name__)
V = TypeVar("V")
# How long one poll waits for records: the longest a `stop` or a timeout waits to be seen.
POLL_MS = 500


def from_start(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, assigned to `consumer` from its start. UnknownTopicOrPartitionError
    when the brokers do not know the topic."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not partitions:
        raise UnknownTopicOrPartitionError(f"{topic} is not known to the brokers: not created yet (patchgate "
                                           "topics), or not readable by this principal (patchgate kafka-acls)")
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return partitions


def records_to_end(consumer: KafkaConsumer, partitions: list[TopicPartition], timeout_s: float | None,
                   stop: Callable[[], bool] = lambda: False) -> Iterator[ConsumerRecord]:
    """The records of the assigned `partitions` from where the consumer stands up to the ends they
    have now, and no further. TimeoutError when the consumer moves no further for `timeout_s`
    (None: waits as long as it takes); returns early, short of the ends, once `stop()` is true."""
    ends = consumer.end_offsets(partitions)
    last: dict[TopicPartition, int] = {}
    moved = time.monotonic()
    while not stop():
        positions = {tp: consumer.position(tp) for tp in partitions}
        short = [tp for tp in partitions if positions[tp] < ends[tp]]
        if not short:
            return
        if positions != last:
            last, moved = positions, time.monotonic()
        elif timeout_s is not None and time.monotonic() - moved > timeout_s:
            raise TimeoutError(f"{short[0].topic}: did not reach the end of {[tp.partition for tp in short]}: "
                               f"nothing came for {timeout_s:g} s")
        for tp, messages in consumer.poll(timeout_ms=POLL_MS).items():
            for message in messages:
                if message.offset >= ends[tp]:
                    # Written after the read began: left where whoever reads on will find it.
                    consumer.seek(tp, ends[tp])
                    break
                yield message


def read_compacted(consumer: KafkaConsumer, topic: str, fold: Callable[[], Compacted[V]],
                   timeout_s: float | None) -> dict[int, Compacted[V]]:
    """A compacted topic from its start to its end, each partition folded into the Compacted that
    `fold()` gives it: a new one per call keeps the partitions apart (a table's changelog), the same
    one every time folds the whole topic (mail.decisions, whose keys are servers). Raises as
    `from_start` and `records_to_end` do."""
    partitions = from_start(consumer, topic)
    folds = {tp.partition: fold() for tp in partitions}
    for message in records_to_end(consumer, partitions, timeout_s):
        folded(folds[message.partition].add, message)
    return folds


def folded(add: Callable[[bytes, bytes | None], bool], message: ConsumerRecord) -> bool:
    """`add(key, value)` of one record (Compacted.add, or what folds as it does); whether it changed
    what is held. A record that is not what the topic holds is logged and skipped."""
    try:
        return add(message.key, message.value)
    except AvroDecodeError as exc:
        log.warning("skipped %s/%s/%s: %s", message.topic, message.partition, message.offset, exc)
        return False
