"""Shared fixtures and helpers of the unit tests: decisions as the enforce agent emits them, and the
policy stepped over observations as the stream steps it."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from pipeline.catalog_files import load_catalog
from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT_DECISION
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import ServerObservation, server_id_of
from pipeline.domain.policy import Decision, ServerState, step
from tests.conftest import decision

# The policy tests' clock starts here; their servers are seen against the bundled catalog.
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CATALOG = load_catalog()
SERVER = "ex16mbx01.contoso.example"


@pytest.fixture
def make_decision():
    """make_decision(version, stage): the decision on ex13mbx01.contoso.example (no org); stage 2
    throttles 5 minutes an hour, and each version is decided a day after the one before."""
    def make(version: int, stage: int) -> Decision:
        return decision(stage=stage, version=version, throttle_minutes_per_hour=5 if stage == 2 else 0,
                        next_stage_start_date=date(2026, 2, 1 if stage == 1 else 11),
                        decided_at=datetime(2026, 1, 2 + version, tzinfo=UTC))
    return make


def seen(build: str | None, at: datetime, server: str = SERVER, org: str | None = None,
         in_scope: bool = True) -> ServerObservation:
    """One sighting of `server` (of `org`) at `at` in a tracking log: with its build from the
    version field, or (no build) its traffic alone."""
    observation = ServerObservation.once(server_id_of(server, org), server, org, at, build,
                                         "msgtrk-version" if build else "msgtrk-traffic")
    return observation if in_scope else replace(observation, in_scope=False)


def run(observations, config: PolicyConfig | None = None) -> tuple[ServerState | None, list[Decision]]:
    """`step` over the observations one by one, as the stream takes them: the last state and every
    decision published on the way."""
    config = PolicyConfig() if config is None else config
    state, decisions = None, []
    for observation in observations:
        state, published = step(state, observation, config, CATALOG)
        if published:
            decisions.append(published)
    return state, decisions


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
