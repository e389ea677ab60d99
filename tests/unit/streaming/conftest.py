"""Stand-ins for Faust's tables and events: a table that remembers which partition each write
went to (Faust takes it from the current event), and events of raw records. For the agents: the
app as the worker builds it, with in-memory tables and a stand-in for the broker they send to."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from faust.agents.agent import AgentTestWrapper
from faust.streams import current_event
from faust.topics import Topic

from pipeline.catalog_files import load_catalog
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import insert_decisions
from pipeline.streaming.app import processing_app, sink_app


class PartitionedTable:
    """A dict per partition, written and read in the partition of the current event, as Faust's
    tables are."""

    def __init__(self):
        self.partitions: dict[int, dict[bytes, bytes]] = {}
        self.writes: list[tuple[int, bytes]] = []
        self.data = object()  # not RocksDB: TableBatch takes the generic path

    def _here(self) -> dict[bytes, bytes]:
        event = current_event()
        assert event is not None, "table used outside of an event's partition"
        return self.partitions.setdefault(event.message.partition, {})

    def get(self, key, default=None):
        return self._here().get(key, default)

    def __setitem__(self, key, value):
        self.writes.append((current_event().message.partition, key))
        self._here()[key] = value
        self.send_changelog(current_event().message.partition, key, value)

    def pop(self, key, default=None):
        self.writes.append((current_event().message.partition, key))
        self.send_changelog(current_event().message.partition, key, None)
        return self._here().pop(key, default)

    def send_changelog(self, partition, key, value):
        """As a Faust table sends each write to its changelog; what it returns stands for the
        record's future (the tests that use this table flush without awaiting it)."""
        return ("changelog", partition, key)

    def items(self):
        return list(self._here().items())


@dataclass
class Message:
    key: bytes | None
    value: bytes
    partition: int = 0
    offset: int = 0
    topic: str = "mail.logs.raw"
    timestamp: float | None = 1_771_000_000.0
    headers: list = field(default_factory=list)


class Event:
    def __init__(self, message: Message):
        self.message = message


@pytest.fixture
def table():
    return PartitionedTable


@pytest.fixture
def event():
    def make(key=b"k", value=b"", partition=0, offset=0, headers=()):
        return Event(Message(key, value, partition, offset, headers=list(headers)))
    return make


class SentRecord(asyncio.Future):
    """What Faust's send_soon and send return: a future with the message it sends; `awaited` once
    something waits for it (awaiting a future, or gathering it, adds a done callback)."""

    message: SimpleNamespace
    awaited = False

    def add_done_callback(self, fn, *, context=None):
        self.awaited = True
        super().add_done_callback(fn, context=context)


class Broker:
    """Stands in for Kafka where the agents send: every record by topic, acknowledged at once, or
    once `release`d while `holding`. Table changelog records (which Faust buffers) are in `sent`
    too, held alike, and a producer flush as the record ("<flush>", None, None)."""

    def __init__(self):
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.holding = False
        self._held: list[tuple[str, SentRecord]] = []

    def _delivery(self, topic: str, partition=None) -> SentRecord:
        delivery = SentRecord(loop=asyncio.get_running_loop())
        delivery.message = SimpleNamespace(partition=partition)
        if self.holding:
            self._held.append((topic, delivery))
        else:
            delivery.set_result(None)
        return delivery

    def buffer(self, topic, *, key=None, value=None, partition=None, **_) -> asyncio.Future:
        self.sent.append((topic.get_topic_name(), key, value))
        return self._delivery(topic.get_topic_name(), partition)

    def waiting_for_acks(self, topic: str | None = None) -> bool:
        """Whether the sender waits for the acknowledgement of every record held (of one on `topic`
        among them): it can send nothing more before a `release`, so what it sent so far is all."""
        held = [delivery for name, delivery in self._held if topic in (None, name)]
        return bool(held) and all(delivery.awaited for _, delivery in self._held)

    async def flush(self) -> None:
        self.sent.append(("<flush>", None, None))

    def values(self, topic: str) -> list[bytes | None]:
        return [value for name, _, value in self.sent if name == topic]

    def release(self) -> None:
        for _, delivery in self._held:
            delivery.set_result(None)
        self._held.clear()

    async def send(self, topic, *, key=None, value=None, **_) -> asyncio.Future:
        self.sent.append((topic.get_topic_name(), key, value))
        return self._delivery(topic.get_topic_name())


@pytest.fixture
def broker(monkeypatch):
    sends_to = Broker()
    monkeypatch.setattr(Topic, "send", lambda topic, **record: sends_to.send(topic, **record))
    monkeypatch.setattr(Topic, "send_soon", lambda topic, **record: sends_to.buffer(topic, **record))
    return sends_to


@pytest.fixture
def streaming_app(broker, monkeypatch, tmp_path):
    """The worker's app with in-memory tables (or, with a ClickHouse handle or role="sink", the
    sink's app), sending to `broker`, each agent taking one record at a time
    (or `batch` records, without a time limit); what would stop the worker goes to `app.crashes`.
    Each record put to an agent holds one reference, as the worker's conductor gives it for each
    stream it feeds: it is acked when that stream acks it (test_context alone gives none)."""
    to_message = AgentTestWrapper.to_message

    def referenced(agent, *args, **kwargs):
        message = to_message(agent, *args, **kwargs)
        message.incref()
        return message
    monkeypatch.setattr(AgentTestWrapper, "to_message", referenced)

    def make(clickhouse=None, batch=1, role=None, **settings):
        for module, size, within in (("agents", "RAW_BATCH", "RAW_WITHIN"),
                                     ("agents", "OBSERVATION_BATCH", "OBSERVATION_WITHIN"),
                                     ("sink_agents", "BATCH_SIZE", "BATCH_SECONDS")):
            monkeypatch.setattr(f"pipeline.streaming.{module}.{size}", batch)
            monkeypatch.setattr(f"pipeline.streaming.{module}.{within}", 60.0)
        configured = Settings(app_id="pg-unit", data_dir=tmp_path, **settings)
        if (role or ("sink" if clickhouse is not None else "worker")) == "sink":
            app = sink_app(configured, load_catalog(), clickhouse=clickhouse)
        else:
            app = processing_app(configured, load_catalog(), store="memory://")
        crashes: list[BaseException] = []
        monkeypatch.setattr(app, "crashes", crashes, raising=False)
        monkeypatch.setattr(app.producer, "flush", broker.flush)

        async def crash(reason: BaseException) -> None:
            crashes.append(reason)
        monkeypatch.setattr(app, "crash", crash)
        return app
    return make


@pytest.fixture
def until():
    """Wait (5 s at most) for something the agents do; fails naming it."""
    async def wait(done, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 5.0
        while not done():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting until {what}"
            await asyncio.sleep(0.002)
    return wait


class FailingInserts:
    """The sink's decision inserts, refused by "ClickHouse" while `failing`; `tries` has the
    deduplication token of every attempt."""

    def __init__(self):
        self.failing, self.tries = True, []

    def __call__(self, client, rows, dedup_token):
        self.tries.append(dedup_token)
        if self.failing:
            raise ConnectionError("Code: 210. DB::NetException: Connection refused")
        insert_decisions(client, rows, dedup_token)


@pytest.fixture
def failing_inserts(monkeypatch):
    monkeypatch.setattr("pipeline.streaming.storage.FIRST_BACKOFF_S", 0.001)
    inserts = FailingInserts()
    monkeypatch.setattr("pipeline.streaming.sink_agents.insert_decisions", inserts)
    return inserts
