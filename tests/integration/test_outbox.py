"""The outbox on the real broker: its look at the end of mail.decisions finds the records a stopped
worker published where Faust's producer put them, and not the others; what a stopped worker left in
it is published by the next one."""
import asyncio
import time

from aiokafka import AIOKafkaProducer

from pipeline import kafka_clients
from pipeline.contracts.topics import DECISIONS
from pipeline.streaming.outbox import not_yet_published, tails


def test_the_end_of_each_partition_holds_what_was_published_last(pipeline_env):
    settings, _ = pipeline_env
    topic = settings.topic(DECISIONS)
    earlier = [(f"ex{n:02}.contoso.example".encode(), b"v1 %d" % n) for n in range(40)]
    published = [(b"ex03.contoso.example", b"v2"), (b"ex17.contoso.example", b"v2")]
    never_sent = [(b"ex29.contoso.example", b"v2")]

    async def scenario():
        # Keyed sends without a partition, as Faust's producer (aiokafka's default partitioner) makes them.
        producer = AIOKafkaProducer(**kafka_clients.options(settings, acks="all"))
        await producer.start()
        try:
            for key, value in earlier + published:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()
        return await tails(settings, topic, published + never_sent)

    tail = asyncio.run(scenario())
    assert set(published) <= set(tail)
    assert not_yet_published(published + never_sent, tail) == never_sent
    # Only the end of the partitions asked for: far fewer than the 42 records sent.
    assert len(tail) < len(earlier)


def test_a_worker_publishes_what_a_stopped_one_left_in_the_outbox(pipeline_env, start_worker, drained, read_topic):
    """An outbox value in the server-state changelog, as a worker killed between writing it and
    emptying it leaves it: the next worker restores it from the changelog, stores its state,
    publishes its decision once and deletes it when its partition's next batch comes."""
    from datetime import UTC, datetime

    from pipeline.catalog_files import load_catalog
    from pipeline.contracts import records, topics
    from pipeline.contracts.avro import ENFORCEMENT_DECISION, SERVER_OBSERVATION
    from pipeline.contracts.topics import partition_for
    from pipeline.domain.config import PolicyConfig
    from pipeline.domain.events import ServerObservation
    from pipeline.domain.policy import step
    from pipeline.kafka_admin import ensure_topics
    from pipeline.streaming.outbox import StoredServer, outbox_key, outbox_values

    settings, _ = pipeline_env
    ensure_topics(settings)
    left = "left.contoso.example"
    partition = partition_for(left.encode(), settings.partitions)
    later = next(f"mx{n}.fabrikam.example" for n in range(100)
                 if partition_for(f"mx{n}.fabrikam.example".encode(), settings.partitions) == partition)

    def seen(server: str) -> ServerObservation:
        return ServerObservation.once(server, server, None, datetime(2026, 2, 10, 8, 0, tzinfo=UTC), "15.0.1497.2",
                                      "received-id", "<m@x>", 100)
    state, decision = step(None, seen(left), PolicyConfig(), load_catalog())
    record = (left.encode(), ENFORCEMENT_DECISION.encode(records.decision_record(decision)))
    changelog = topics.changelog_topic(settings, topics.SERVER_STATE_TABLE)
    producer = kafka_clients.producer(settings, acks="all")
    producer.send(changelog, key=outbox_key(partition, 0), value=outbox_values([(state, record)])[0],
                  partition=partition).get(timeout=30)
    worker = start_worker()
    # Sent once the worker runs: a lone record on a partition that Faust fetches and throws away
    # while it starts waits for a later record to be acked before it is read again (transport.py).
    deadline = time.monotonic() + 120
    while "[^Worker]: Ready" not in worker.log.read_text(errors="replace"):
        assert worker.alive() and time.monotonic() < deadline, worker.tail()
        time.sleep(0.5)
    producer.send(settings.topic(topics.OBSERVATIONS), key=later.encode(), partition=partition,
                  value=SERVER_OBSERVATION.encode(records.observation_record(seen(later)))).get(timeout=30)
    producer.close()

    drained(settings, worker)
    published = [r for r in read_topic(settings, topics.DECISIONS) if r.value]
    assert sorted(r.key for r in published) == [left.encode(), later.encode()]
    assert [r.value for r in published if r.key == left.encode()] == [record[1]]
    written = {r.key: r.value for r in read_topic(settings, changelog, prefixed=False)}
    assert written[outbox_key(partition, 0)] is None  # deleted: a tombstone
    assert StoredServer.decode(written[left.encode()]).state == state
