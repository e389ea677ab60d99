"""The consumer's guards: against records fetched before a seek back (faust-streaming #216, #221),
driven through Faust's own getmany with aiokafka's real subscription state in place of a broker; and
against commits past a record dropped unacked (faust-streaming #606), through Faust's own commit
bookkeeping."""
import asyncio
from types import SimpleNamespace

from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import ConsumerRecord, TopicPartition
from intervaltree import IntervalTree

from pipeline.catalog_files import load_catalog
from pipeline.settings import Settings
from pipeline.streaming.app import processing_app
from pipeline.streaming.transport import REREAD_AFTER_S, InOrderConsumer, fetched_before_seek, first_unacked

RAW = TopicPartition("pg-unit.mail.logs.raw", 0)
DECISIONS = TopicPartition("pg-unit.mail.decisions", 0)  # compacted: holes are normal there


def record(offset: int) -> ConsumerRecord:
    return ConsumerRecord(RAW.topic, RAW.partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


def offsets_delivered(records, position) -> list[int]:
    """What the worker's consumer delivers of `records` fetched at once, its aiokafka client being at
    `position` on RAW."""
    return asyncio.run(_deliver(records, position))[0]


async def _deliver(records, position, with_agent=None) -> tuple[list[int], object]:
    """The offsets delivered and RAW's read offset after the fetch; `with_agent(consumer,
    subscriptions, offset)` runs while the agent has each record, then the read offset is set as
    Faust's drain loop sets it."""
    app = processing_app(Settings(app_id="pg-unit", topic_prefix="pg-unit."), load_catalog())
    consumer = app.consumer
    assert isinstance(consumer, InOrderConsumer)
    subscriptions = SubscriptionState()
    subscriptions.subscribe(topics={RAW.topic})
    subscriptions.assign_from_subscribed({RAW})
    if position is not None:
        subscriptions.seek(RAW, position)
    consumer._thread._consumer = SimpleNamespace(_subscription=subscriptions, highwater=lambda tp: 100)

    async def fetched(_timeout):
        return {RAW: records}, None
    consumer._wait_next_records = fetched  # type: ignore[method-assign]  # the fetch, without a broker
    consumer.flow_active = True
    delivered = []
    async for tp, message in consumer.getmany(timeout=0.1):
        delivered.append(message.offset)
        if with_agent is not None:
            with_agent(consumer, subscriptions, message.offset)
        consumer._read_offset[tp] = message.offset
    return delivered, consumer._read_offset[RAW]


def test_records_before_the_position_pass_in_order():
    assert offsets_delivered([record(offset) for offset in (40, 41, 42)], position=43) == [40, 41, 42]


def test_records_a_seek_went_back_past_are_held_back(caplog):
    # Fetched up to 42, then the rebalance seeks back to the committed 38: 38..42 come again.
    fetched = [record(offset) for offset in (36, 37, 38, 39, 40, 41, 42)]
    with caplog.at_level("INFO", logger="pipeline.streaming.transport"):
        assert offsets_delivered(fetched, position=38) == [36, 37]
    assert "5 of pg-unit.mail.logs.raw/0" in caplog.text


def test_a_seek_while_the_agent_has_a_record_keeps_its_read_offset():
    # The rebalance seeks back to the committed 38 while the agent holds 40: Faust's drain loop then
    # records 40 as read, and would drop 38 and 39 when they come again, never to be acked.
    def rebalance_at_40(consumer, subscriptions, offset):
        if offset == 40:
            subscriptions.seek(RAW, 38)
            consumer._read_offset[RAW] = 38  # what Faust's perform_seek sets
    fetched = [record(offset) for offset in (39, 40, 41, 42)]
    delivered, read_offset = asyncio.run(_deliver(fetched, 43, with_agent=rebalance_at_40))
    assert delivered == [39, 40] and read_offset == 38


def test_nothing_passes_while_the_position_is_being_reset():
    assert offsets_delivered([record(7)], position=None) == []


def test_fetched_before_seek():
    assert not fetched_before_seek(9, 10)
    assert fetched_before_seek(10, 10)
    assert fetched_before_seek(11, 10)
    assert fetched_before_seek(0, None)


def sought_consumer(committed: int, log_start: int = 0, clock=lambda: 0.0) -> tuple[InOrderConsumer, list]:
    """A worker's consumer whose partitions RAW and DECISIONS Faust sought to `committed`, on a broker
    whose logs start at `log_start`; the second value lists the seeks made after that."""
    consumer = processing_app(Settings(app_id="pg-unit", topic_prefix="pg-unit."), load_catalog()).consumer
    assert isinstance(consumer, InOrderConsumer)
    sought: list = []

    async def seek_to_committed():
        return {RAW: committed, DECISIONS: committed}

    async def earliest_offsets(*partitions):
        return dict.fromkeys(partitions, log_start)
    # The consumer thread's part the seek uses, without a broker.
    consumer._thread = SimpleNamespace(  # type: ignore[assignment]
        seek_to_committed=seek_to_committed, earliest_offsets=earliest_offsets,
        seek=lambda tp, offset: sought.append((tp, offset)), _consumer=None)
    consumer.clock = clock
    asyncio.run(consumer.perform_seek())
    return consumer, sought


def committing(partition: TopicPartition, committed: int, acked: list[int]) -> object:
    """What the worker's consumer would commit on `partition` with these offsets acked."""
    consumer, _ = sought_consumer(committed)
    consumer._acked[partition].extend(acked)
    return consumer._new_offset(partition)


def test_no_commit_past_a_record_not_acked(caplog):
    # Committed up to 211; 211 was dropped by the stream at a rebalance, 212 and 213 acked.
    with caplog.at_level("WARNING", logger="pipeline.streaming.transport"):
        assert committing(RAW, 211, [212, 213]) is None
    assert "record 211 is not acked and records after it are" in caplog.text
    assert committing(RAW, 211, [212, 213, 211]) == 214


def test_a_compacted_topic_commits_over_a_hole_at_its_head():
    assert committing(DECISIONS, 211, [212, 213]) == 214


def test_before_its_first_seek_a_partition_commits_as_faust_does():
    # Between a rebalance's revoke and its seek the committed offset is not known here.
    consumer = processing_app(Settings(app_id="pg-unit", topic_prefix="pg-unit."), load_catalog()).consumer
    assert isinstance(consumer, InOrderConsumer)
    consumer._acked[RAW].extend([212, 213])
    assert consumer._new_offset(RAW) == 214


def test_a_dropped_record_is_read_again_without_the_acked_ones_after_it(caplog):
    now = [100.0]
    consumer, sought = sought_consumer(211, clock=lambda: now[0])
    consumer._acked[RAW].extend([212, 213])
    consumer._acked_index[RAW].update([212, 213])
    assert consumer._new_offset(RAW) is None
    now[0] += REREAD_AFTER_S - 1
    assert consumer._new_offset(RAW) is None and not consumer._rereads
    now[0] += 1
    assert consumer._new_offset(RAW) is None and consumer._rereads == {RAW: 211}

    async def fetch_again():
        # aiokafka fetches from the sought offset on: its position is past what it handed out.
        subscriptions = SubscriptionState()
        subscriptions.subscribe(topics={RAW.topic})
        subscriptions.assign_from_subscribed({RAW})
        subscriptions.seek(RAW, 214)
        consumer._thread._consumer = SimpleNamespace(_subscription=subscriptions)
        consumer._thread.highwater = lambda tp: 214  # type: ignore[method-assign]

        async def fetched(_timeout):
            return {RAW: [record(offset) for offset in (211, 212, 213)]}, None
        consumer._wait_next_records = fetched  # type: ignore[method-assign]
        consumer.flow_active = True
        return [message.offset async for _, message in consumer.getmany(timeout=0.1)]
    with caplog.at_level("WARNING", logger="pipeline.streaming.transport"):
        assert asyncio.run(fetch_again()) == [211]
    assert sought == [(RAW, 211)] and consumer._read_offset[RAW] == 211
    assert "record 211 was dropped unacked; reading the partition again from it" in caplog.text
    consumer._acked[RAW].append(211)
    assert consumer._new_offset(RAW) == 214


def test_offsets_deleted_before_they_were_read_are_committed_past(caplog):
    now = [0.0]
    consumer, sought = sought_consumer(5, log_start=50, clock=lambda: now[0])
    consumer._acked[RAW].extend([50, 51])
    assert consumer._new_offset(RAW) is None
    now[0] += REREAD_AFTER_S
    assert consumer._new_offset(RAW) is None
    with caplog.at_level("WARNING", logger="pipeline.streaming.transport"):
        asyncio.run(consumer._reread_dropped())
    assert "offsets 5 to 49 were deleted before they were read" in caplog.text
    assert sought == [] and consumer._new_offset(RAW) == 52


def test_offsets_the_drain_loop_skipped_stay_owed_on_a_topic_without_holes():
    # Faust's drain loop takes offsets it never delivered for a gap, as if they were acked.
    consumer, _ = sought_consumer(211)
    for partition in (RAW, DECISIONS):
        asyncio.run(consumer._add_gap(partition, 212, 215))
        consumer._acked[partition].extend([211, 216])
    assert consumer._new_offset(RAW) == 212 and consumer._new_offset(RAW) is None
    assert consumer._new_offset(DECISIONS) == 217


def test_first_unacked():
    gap = IntervalTree()
    assert first_unacked(None, gap) == 0
    gap.addi(0, 50)
    gap.addi(50, 60)
    assert first_unacked(None, gap) == 60
    assert first_unacked(70, gap) == 70
