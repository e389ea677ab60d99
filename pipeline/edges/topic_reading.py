"""Reading assigned partitions of a topic up to the ends they have now, with kafka-python: what the
notifier does with mail.decisions and the shipper with what it reads back of mail.logs.raw."""
from __future__ import annotations

import time
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition


def records_to_end(consumer: KafkaConsumer, partitions: list[TopicPartition], timeout_s: float) -> Iterator:
    """The records of the assigned `partitions`, from where the consumer stands up to the ends they
    have now; TimeoutError after `timeout_s`."""
    ends = consumer.end_offsets(partitions)
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        if time.monotonic() > deadline:
            raise TimeoutError(f"did not reach the end of {partitions[0].topic} in {timeout_s} s")
        for messages in consumer.poll(timeout_ms=500).values():
            yield from messages
