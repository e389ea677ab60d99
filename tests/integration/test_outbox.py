"""The outbox's look at the end of mail.decisions, on the real broker: the records a stopped worker
published are found where Faust's producer put them, and the others are not."""
import asyncio

from aiokafka import AIOKafkaProducer

from pipeline import kafka_clients
from pipeline.streaming.outbox import not_yet_published, tails
from pipeline.streaming.topics import DECISIONS


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
