"""Reading a topic to the ends it has now: where a read stops, when it gives up, and the tombstone
rule of a compacted topic, with a stand-in for kafka-python's consumer (conftest.DecisionsTopic)."""
import logging
from itertools import count

import pytest
from kafka import TopicPartition
from kafka.errors import UnknownTopicOrPartitionError

from pipeline import topic_reading
from pipeline.contracts import records
from pipeline.contracts.compacted import Compacted

NAME = "mail.decisions"


def at_start(topic) -> list[TopicPartition]:
    return topic_reading.from_start(topic, NAME)


def test_a_read_stops_at_the_ends_it_began_with_and_leaves_the_consumer_there(decisions_topic):
    """Records written while the read goes on are left for whoever reads on with the consumer."""
    topic = decisions_topic(partitions=2, batch=2)
    for n in range(3):
        topic.append(b"a%d" % n, b"1", partition=0)
    topic.append(b"b", b"1", partition=1)
    topic.on_poll = lambda topic: topic.append(b"later", b"2", partition=topic.polls % 2)
    read = [(m.partition, m.key) for m in topic_reading.records_to_end(topic, at_start(topic), 5.0)]
    assert sorted(read) == [(0, b"a0"), (0, b"a1"), (0, b"a2"), (1, b"b")]
    assert topic.positions == {TopicPartition(NAME, 0): 3, TopicPartition(NAME, 1): 1}
    topic.on_poll = lambda topic: None
    assert {m.key for found in topic.poll().values() for m in found} == {b"later"}


def test_a_partition_is_at_its_end_when_the_position_is_though_offsets_before_it_hold_no_record(decisions_topic):
    """A transaction marker, or compaction, leaves the last offsets without a record to read."""
    topic = decisions_topic(partitions=1)
    topic.append(b"a", b"1")
    topic.end_offsets = lambda partitions: dict.fromkeys(partitions, 3)
    fetch = topic.poll

    def poll(timeout_ms=0):
        fetched = fetch(timeout_ms)
        topic.positions.update(dict.fromkeys(topic.assigned, 3))  # the broker's fetch steps over the marker
        return fetched
    topic.poll = poll
    assert [m.key for m in topic_reading.records_to_end(topic, at_start(topic), 0.0)] == [b"a"]


def test_a_read_that_moves_no_further_for_its_timeout_names_the_topic_and_partitions(decisions_topic, monkeypatch):
    clock = count(step=10)
    monkeypatch.setattr(topic_reading.time, "monotonic", lambda: next(clock))
    topic = decisions_topic(partitions=3, batch=0)
    topic.append(b"a", b"1", partition=1)
    topic.append(b"b", b"1", partition=2)
    with pytest.raises(TimeoutError,
                       match=r"^mail.decisions: did not reach the end of \[1, 2\]: nothing came for 15 s$"):
        list(topic_reading.records_to_end(topic, at_start(topic), 15.0))


def test_a_long_read_that_keeps_moving_is_not_timed_out(decisions_topic, monkeypatch):
    clock = count(step=10)
    monkeypatch.setattr(topic_reading.time, "monotonic", lambda: next(clock))
    topic = decisions_topic(partitions=1, batch=1)
    for n in range(20):
        topic.append(b"k%d" % n, b"1")
    assert len(list(topic_reading.records_to_end(topic, at_start(topic), 15.0))) == 20


def test_a_read_returns_short_of_the_end_once_stopped(decisions_topic):
    topic = decisions_topic(partitions=1, batch=1)
    for n in range(5):
        topic.append(b"k%d" % n, b"1")
    read = topic_reading.records_to_end(topic, at_start(topic), None, stop=lambda: topic.polls >= 2)
    assert [m.key for m in read] == [b"k0", b"k1"]


def test_a_topic_the_brokers_do_not_know_says_what_to_do(decisions_topic):
    with pytest.raises(UnknownTopicOrPartitionError, match=r"mail.decisions is not known to the brokers: .*"
                                                           r"\(patchgate topics\).*\(patchgate kafka-acls\)"):
        at_start(decisions_topic(partitions=0))


def test_a_tombstone_deletes_its_keys_earlier_records_per_partition_or_over_the_whole_topic(decisions_topic):
    topic = decisions_topic(partitions=2, batch=1)
    topic.append(b"k", b"old", partition=0)
    topic.append(b"k", None, partition=0)
    topic.append(b"j", b"1", partition=0)
    topic.append(b"k", b"other", partition=1)
    apart = topic_reading.read_compacted(topic, NAME, lambda: Compacted(bytes), 5.0)
    assert {p: fold.by_key for p, fold in apart.items()} == {0: {b"j": b"1"}, 1: {b"k": b"other"}}
    topic.append(b"k", None, partition=1)
    whole: Compacted[bytes] = Compacted(bytes)
    topic_reading.read_compacted(topic, NAME, lambda: whole, 5.0)
    assert whole.by_key == {b"j": b"1"}


def test_a_record_that_is_not_a_decision_is_logged_and_skipped(decisions_topic, make_decision, caplog):
    topic = decisions_topic(partitions=1)
    topic.write(make_decision(1, 1))
    topic.append(b"x", b"not a decision")
    topic.write(make_decision(2, 2))
    newest = records.latest_decisions()
    with caplog.at_level(logging.WARNING):
        topic_reading.read_compacted(topic, NAME, lambda: newest, 5.0)
    assert [d.version for d in newest.by_key.values()] == [2]
    assert caplog.messages == ["skipped mail.decisions/0/1: not an Avro record in single-object or Confluent framing "
                               "(14 bytes, starts 6e6f)"]
