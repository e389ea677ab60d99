"""Read enforcement decisions from mail.decisions with kafka-python, as an MTA-side consumer does.

mail.decisions is compacted and keyed by server id: a tombstone deletes its server's decisions
(contracts.compacted).
"""
from __future__ import annotations

import operator

from pipeline import kafka_clients, topic_reading
from pipeline.contracts import records, topics
from pipeline.contracts.compacted import Compacted
from pipeline.domain.policy import Decision
from pipeline.edges import RECONNECT_BACKOFF_MAX_MS
from pipeline.settings import Settings


def read_decisions(settings: Settings, timeout_s: float = 30.0) -> list[Decision]:
    """Every decision on the topic from the beginning up to its current end: each server's in the
    order read, the servers in the order their first decision was read. A server's decisions
    before a tombstone of its key are left out (it was deleted), as compaction leaves them out.

    A record that is not a decision is logged and skipped: one bad record must not stop enforcement.
    UnknownTopicOrPartitionError when the topic is not known, TimeoutError when the read stalls for
    `timeout_s` (topic_reading)."""
    consumer = kafka_clients.consumer(settings, reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)
    try:
        # Per server, its decisions in the order read: a tombstone deletes those read before it.
        history: Compacted[list[Decision]] = Compacted(
            lambda value: [records.decision_from_value(value)], keep=operator.add)
        topic_reading.read_compacted(consumer, settings.topic(topics.DECISIONS), lambda: history, timeout_s)
        return [decision for decisions in history.by_key.values() for decision in decisions]
    finally:
        consumer.close()
