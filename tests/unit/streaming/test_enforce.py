"""A batch of mail.observations and mail.control.applied records through EnforceBatch, with
stand-in tables whose changelog records go to the stand-in broker: what the enforce agent does
between reading a batch and acking it, and in which order."""
import asyncio
from datetime import UTC, date, datetime
from types import SimpleNamespace

import faust
import pytest

from pipeline.catalog_files import load_catalog
from pipeline.contracts import records, topics
from pipeline.contracts.avro import DEAD_LETTER, ENFORCEMENT_DECISION, SERVER_OBSERVATION
from pipeline.contracts.control import CONTROL_APPLIED, applied_record
from pipeline.contracts.topics import partition_for
from pipeline.domain.config import Exemption
from pipeline.domain.control import ControlCommand, Controls, Outcome
from pipeline.domain.events import ServerObservation
from pipeline.settings import Settings
from pipeline.streaming.controls import CONTROLS_KEY, decode_controls
from pipeline.streaming.dead_letters import DeadLetterLimit
from pipeline.streaming.enforce import EnforceBatch
from pipeline.streaming.outbox import StoredServer, outbox_key
from tests.unit.streaming.conftest import PartitionedTable

SETTINGS = Settings(app_id="pg-unit")
SERVER = b"ex01.contoso.example"
HOME = partition_for(SERVER, SETTINGS.partitions)
EX2013 = "15.0.1497.2"  # out of support
SERVER_STATES, CONTROLS_IN_FORCE = "server-state-changelog", "controls-in-force-changelog"


def observation(at: datetime, build: str = EX2013) -> bytes:
    seen = ServerObservation.once(SERVER.decode(), SERVER.decode(), None, at, build, "msgtrk-version", "<a@x>", 100)
    return SERVER_OBSERVATION.encode(records.observation_record(seen))


EXEMPTED = CONTROL_APPLIED.encode(applied_record(
    ControlCommand("c1", "exempt", SERVER.decode(), datetime(2026, 4, 1, tzinfo=UTC), until=date(2026, 9, 1),
                   reason="vendor appliance"),
    Outcome(True, "exempt"), Controls(exemptions=(Exemption(SERVER.decode(), date(2026, 9, 1), "vendor appliance"),))))


@pytest.fixture
def enforce(table: type[PartitionedTable], event, broker):
    """Runs batches of records through EnforceBatch: a record is (value, topic), all of SERVER's
    partition; the tables and the dead-letter limit outlive the batches, as the agent's do."""
    class ChangelogTable(table):  # type: ignore[valid-type,misc]  # the fixture's class
        def __init__(self, changelog: str):
            super().__init__()
            self.changelog = SimpleNamespace(get_topic_name=lambda: changelog)

        def send_changelog(self, partition, key, value):
            return broker.buffer(self.changelog, key=key, value=value, partition=partition)

    app = faust.App("pg-unit-enforce")

    def topic(name: str) -> faust.TopicT:
        return app.topic(SETTINGS.topic(name), key_type=bytes, value_type=bytes)

    runner = SimpleNamespace(states=ChangelogTable(SERVER_STATES), in_force=ChangelogTable(CONTROLS_IN_FORCE),
                             limit=DeadLetterLimit("enforce", 1.0, 5), offset=0)
    decisions, dead_letters = topic(topics.DECISIONS), topic(topics.DEAD_LETTERS)

    async def run(*values: tuple[bytes, str]) -> EnforceBatch:
        batch = EnforceBatch(runner.states, runner.in_force, decisions, dead_letters,
                             SETTINGS.topic(topics.CONTROL_APPLIED), SETTINGS, load_catalog(), runner.limit)
        for value, on in values:
            runner.offset += 1
            record = event(SERVER, value, HOME, runner.offset)
            record.message.topic = SETTINGS.topic(on)
            await batch.add(record)
        await batch.decide()
        await batch.flush()
        return batch
    runner.run = run
    return runner


def decisions(broker):
    return [records.decision_from_record(ENFORCEMENT_DECISION.decode(value))
            for value in broker.values(topics.DECISIONS)]


def test_observations_make_one_decision_published_once_and_stored_with_the_server_state(enforce, broker):
    async def scenario():
        first = await enforce.run((observation(datetime(2026, 2, 10, 8, 0, tzinfo=UTC)), topics.OBSERVATIONS),
                                  (observation(datetime(2026, 2, 10, 8, 5, tzinfo=UTC)), topics.OBSERVATIONS))
        # A later batch that changes nothing reads the stored state and decides nothing.
        later = await enforce.run((observation(datetime(2026, 2, 10, 8, 9, tzinfo=UTC)), topics.OBSERVATIONS))
        return first, later

    first, later = asyncio.run(scenario())
    [decision] = decisions(broker)
    assert (decision.server_id, decision.version, decision.status, decision.first_detected.minute) == (
        SERVER.decode(), 1, "unsupported", 0)
    assert (dict(first.stages), dict(later.stages), first.bad) == ({decision.stage: 1}, {}, 0)
    stored = StoredServer.decode(enforce.states.partitions[HOME][SERVER])
    assert stored.unpublished == [] and stored.state.version == decision.version
    assert outbox_key(HOME, 0) not in enforce.states.partitions[HOME]


def test_a_change_of_the_controls_in_force_decides_the_partitions_servers_again(enforce, broker):
    async def scenario():
        await enforce.run((observation(datetime(2026, 4, 20, 8, 0, tzinfo=UTC)), topics.OBSERVATIONS))
        await enforce.run((EXEMPTED, topics.CONTROL_APPLIED))
        # The same controls again (a command read twice): nothing changed, nothing is decided.
        await enforce.run((EXEMPTED, topics.CONTROL_APPLIED))

    asyncio.run(scenario())
    assert [(d.version, d.stage, d.reason) for d in decisions(broker)][1:] == [
        (2, 0, "exempt: matches ex01.contoso.example until 2026-09-01 (vendor appliance)")]
    in_force = decode_controls(enforce.in_force.partitions[HOME][CONTROLS_KEY])
    assert [e.pattern for e in in_force.exemptions] == [SERVER.decode()]
    assert enforce.in_force.writes == [(HOME, CONTROLS_KEY)]


def test_a_record_that_does_not_decode_is_dead_lettered_and_the_batch_goes_on(enforce, broker):
    garbage = b"\xc3\x01 written with a schema nobody knows"

    async def scenario():
        return await enforce.run((garbage, topics.OBSERVATIONS),
                                 (observation(datetime(2026, 2, 10, 8, 0, tzinfo=UTC)), topics.OBSERVATIONS),
                                 (garbage, topics.CONTROL_APPLIED))

    batch = asyncio.run(scenario())
    dead = [DEAD_LETTER.decode(value) for value in broker.values(topics.DEAD_LETTERS)]
    assert [(d["topic"], d["topic_offset"], d["raw"]) for d in dead] == [
        (topics.OBSERVATIONS, 1, garbage), (topics.CONTROL_APPLIED, 3, garbage)]
    assert [d.server_id for d in decisions(broker)] == [SERVER.decode()]
    # A bad outcome record is dead-lettered, but counted with the servers' records only.
    assert batch.bad == 1
    assert (enforce.limit.consecutive, enforce.limit.window_bad, enforce.limit.window_records) == (1, 2, 3)


def test_nothing_is_written_before_the_dead_letters_and_the_outbox_are_acknowledged(enforce, broker):
    """The dead letter first; then the outbox (the decision with its state); then the state and the
    decision together; then the outbox emptied. Each step waits for the broker's acknowledgement."""
    def sent():
        return [(topic, key) for topic, key, _ in broker.sent]

    async def settled():
        await asyncio.sleep(0.05)

    async def scenario():
        broker.holding = True
        running = asyncio.ensure_future(enforce.run(
            (b"not avro", topics.OBSERVATIONS),
            (observation(datetime(2026, 2, 10, 8, 0, tzinfo=UTC)), topics.OBSERVATIONS)))
        await settled()
        assert (sent(), enforce.states.writes) == ([(topics.DEAD_LETTERS, SERVER)], [])
        broker.release()
        await settled()
        assert sent()[1:] == [(SERVER_STATES, outbox_key(HOME, 0))]
        broker.release()
        await settled()
        assert sent()[2:] == [(SERVER_STATES, SERVER), (topics.DECISIONS, SERVER)]
        broker.release()
        await settled()
        assert sent()[4:] == [(SERVER_STATES, outbox_key(HOME, 0))]
        assert not running.done()
        broker.release()
        await running

    asyncio.run(scenario())
    assert enforce.states.writes == [(HOME, outbox_key(HOME, 0)), (HOME, SERVER), (HOME, outbox_key(HOME, 0))]
    assert outbox_key(HOME, 0) not in enforce.states.partitions[HOME]
