"""Read enforcement decisions from mail.decisions with kafka-python, as an MTA-side consumer does.

mail.decisions is compacted and keyed by server id: a tombstone deletes its server's decisions
(contracts.compacted).
"""
from __future__ import annotations

import logging
import operator

from kafka import TopicPartition
from kafka.errors import UnknownTopicOrPartitionError

from pipeline import kafka_clients
from pipeline.contracts import records, topics
from pipeline.contracts.avro import AvroDecodeError
from pipeline.contracts.compacted import Compacted
from pipeline.domain.policy import Decision
from pipeline.edges import RECONNECT_BACKOFF_MAX_MS
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def read_decisions(settings: Settings, timeout_s: float = 30.0) -> list[Decision]:
    """Every decision on the topic from the beginning up to its current end: each server's in the
    order read, the servers in the order their first decision was read. A server's decisions
    before a tombstone of its key are left out (it was deleted), as compaction leaves them out.

    A record that is not a decision is logged and skipped: one bad record must not stop enforcement."""
    name = settings.topic(topics.DECISIONS)
    consumer = kafka_clients.consumer(settings, consumer_timeout_ms=int(timeout_s * 1000),
                                     reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)
    try:
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not partitions:
            raise UnknownTopicOrPartitionError(f"{name} is not known to the brokers: not created yet (patchgate "
                                               "topics), or not readable by this principal (patchgate kafka-acls)")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        # Per server, its decisions in the order read: a tombstone deletes those read before it.
        history: Compacted[list[Decision]] = Compacted(
            lambda value: [records.decision_from_value(value)], keep=operator.add)
        for message in consumer:
            try:
                history.add(message.key, message.value)
            except AvroDecodeError as exc:
                log.warning("skipped %s/%s/%s: %s", message.topic, message.partition, message.offset, exc)
            tp = TopicPartition(message.topic, message.partition)
            if message.offset + 1 >= ends[tp]:
                remaining.discard(tp)
            if not remaining:
                break
        if remaining:
            unfinished = sorted(tp.partition for tp in remaining)
            raise TimeoutError(f"{name}: did not reach the end of {unfinished} in {timeout_s} s")
        return [decision for decisions in history.by_key.values() for decision in decisions]
    finally:
        consumer.close()
