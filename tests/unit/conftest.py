"""Shared fixtures of the unit tests: decisions as the enforce agent emits them, and a stand-in
for kafka-python's consumer on mail.decisions."""
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT_DECISION
from pipeline.domain.policy import Decision


@pytest.fixture
def make_decision():
    return decision


def decision(version, stage):
    return Decision(
        server_id="ex13mbx01.contoso.example", org=None, hostname="ex13mbx01.contoso.example",
        product="Exchange2013", build="15.0.1497.2", status="unsupported", stage=stage,
        throttle_minutes_per_hour=5 if stage == 2 else 0, block_minutes_per_hour=0,
        first_detected=datetime(2026, 1, 2, 23, 53, 27, tzinfo=UTC),
        throttle_enabled_date=date(2026, 2, 1), blocking_enabled_date=date(2026, 3, 3),
        next_stage_start_date=date(2026, 2, 1 if stage == 1 else 11), next_stage_throttle_rate=5,
        next_stage_block_rate=0, recommended_builds=(), reason="Exchange2013 is out of support",
        smtp_reply=None, decided_at=datetime(2026, 1, 2 + version, tzinfo=UTC), version=version,
    )


@pytest.fixture
def kafka_answers(monkeypatch):
    """The commands' preflight (`kafka_clients.check_connection`) passes: for a test whose Kafka
    clients are stand-ins, so that no broker is looked for."""
    from pipeline import kafka_clients

    monkeypatch.setattr(kafka_clients, "check_connection", lambda settings, **limits: None)


class DecisionsTopic:
    """A KafkaConsumer stand-in on one topic of `partitions` partitions, holding the records written
    to it (key, value; a value of None is a tombstone). Each poll hands out up to `batch` records
    per assigned partition from where the consumer stands; `on_poll(self)` runs before each one,
    so a test can write more records or stop its reader then."""

    def __init__(self, partitions: int = 1, batch: int = 100, name: str = "mail.decisions"):
        self.name = name
        self.log: dict[int, list[SimpleNamespace]] = {p: [] for p in range(partitions)}
        self.batch = batch
        self.assigned: list = []
        self.positions: dict = {}
        self.seeks_to_start = self.polls = 0
        self.on_poll = lambda topic: None
        self.closed = False

    def append(self, key: bytes, value: bytes | None, partition: int = 0) -> None:
        written = self.log[partition]
        written.append(SimpleNamespace(topic=self.name, partition=partition, offset=len(written), key=key, value=value))

    def write(self, decision, partition: int = 0) -> None:
        """A decision, keyed by its server id as enforce publishes it."""
        self.append(decision.server_id.encode(), ENFORCEMENT_DECISION.encode(records.decision_record(decision)),
                    partition)

    def delete(self, server_id: str, partition: int = 0) -> None:
        """A tombstone of the server's key."""
        self.append(server_id.encode(), None, partition)

    def partitions_for_topic(self, topic):
        return set(self.log)

    def assign(self, partitions):
        self.assigned = list(partitions)

    def seek_to_beginning(self, *partitions):
        self.seeks_to_start += 1
        self.positions.update(dict.fromkeys(partitions, 0))

    def seek(self, tp, offset):
        self.positions[tp] = offset

    def end_offsets(self, partitions):
        return {tp: len(self.log[tp.partition]) for tp in partitions}

    def position(self, tp):
        return self.positions[tp]

    def poll(self, timeout_ms=0):
        self.polls += 1
        self.on_poll(self)
        fetched = {}
        for tp in self.assigned:
            found = self.log[tp.partition][self.positions[tp]:self.positions[tp] + self.batch]
            if found:
                fetched[tp] = found
                self.positions[tp] += len(found)
        return fetched

    def read_to_end(self) -> bool:
        """Whether the consumer stands at the end of every partition assigned."""
        return all(self.positions[tp] == len(self.log[tp.partition]) for tp in self.assigned)

    def __iter__(self):
        """As a consumer with consumer_timeout_ms iterates: until a poll finds nothing."""
        while fetched := self.poll():
            for found in fetched.values():
                yield from found

    def close(self):
        self.closed = True


@pytest.fixture
def decisions_topic():
    """A stand-in for kafka-python's consumer on mail.decisions, for the readers of that topic."""
    return DecisionsTopic
