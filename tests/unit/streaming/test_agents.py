"""The processing agents as the worker wires them (processing_app), each run by Faust's test_context on
an in-memory channel, with in-memory tables and a stand-in broker: what a batch sends, what it
leaves in the tables for the next batch, and when its records are acked."""
import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from faust.agents.agent import AgentTestWrapper
from faust.types import TP

from pipeline.catalog_files import load_catalog
from pipeline.contracts import packing, records
from pipeline.contracts.avro import DEAD_LETTER, ENFORCEMENT_DECISION, SERVER_OBSERVATION
from pipeline.contracts.control import CONTROL_APPLIED, CONTROL_COMMAND, applied_record, command_record
from pipeline.contracts.topics import partition_for
from pipeline.domain.config import Exemption, PolicyConfig
from pipeline.domain.control import ControlCommand, Controls, Outcome
from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import step
from pipeline.settings import DeadLetterSettings, Settings
from pipeline.streaming.dead_letters import DeadLetterLimitExceeded
from pipeline.streaming.outbox import OUTBOX, StoredServer, outbox_key, outbox_values

# 2026-02-17: the reference date of syslog lines, which carry no year.
RECEIVED_AT = 1_771_300_000.0
LOG = "/logs/MSGTRK_EX16.LOG"
HEADER = (b"#Software: Microsoft Exchange Server\r\n#Version: 15.01.2507.039\r\n"
          b"#Fields: date-time,client-hostname,server-hostname,event-id,message-id,total-bytes\r\n")
ROW = b"2026-02-10T08:00:01.000Z,app1.contoso.example,EX16.contoso.example,RECEIVE,<m1@x>,100\r\n"
MAIL_LOG = "/logs/mx1/mail.log"
# A Postfix message cut across two batches: received in one, queued ("queue active") in the next.
RECEIVED = (
    b"Feb 16 11:20:32 mx1 postfix/smtpd[2012]: 4TqN1c2Vb8z1: client=mail19.fabrikam.example[198.51.100.29]\n"
    b"Feb 16 11:20:33 mx1 postfix/cleanup[2015]: 4TqN1c2Vb8z1: warning: header Received: "
    b"from EX19MBX03.fabrikam.example (198.51.100.23) by mail19.fabrikam.example (198.51.100.29) "
    b"with Microsoft SMTP Server id 15.2.1544.14 via Frontend Transport; Mon, 16 Feb 2026 11:20:31 +0000 "
    b"from mail19.fabrikam.example[198.51.100.29]; from=<kim@fabrikam.example> to=<jo@example.net> proto=ESMTP "
    b"helo=<mail19.fabrikam.example>\n"
)
QUEUED = (b"Feb 16 11:20:34 mx1 postfix/qmgr[1480]: 4TqN1c2Vb8z1: from=<kim@fabrikam.example>, size=2100, nrcpt=1 "
          b"(queue active)\n")


def role_of(agent: str) -> str:
    return "sink" if agent.startswith("store_") else "worker"


def agent_named(app, name):
    [agent] = [agent for full_name, agent in app.agents.items() if full_name.endswith(f".{name}")]
    return agent


def acked(*events):
    return lambda: all(event.message.acked for event in events)


def observations(broker):
    return [observation for value in broker.values("mail.observations")
            for observation in records.observations_from_record(SERVER_OBSERVATION.decode(value))]


def decisions(broker):
    return [records.decision_from_record(ENFORCEMENT_DECISION.decode(value))
            for value in broker.values("mail.decisions")]


def dead_letter_reasons(broker):
    return [DEAD_LETTER.decode(value)["reason"] for value in broker.values("mail.traces.dlq")]


def test_a_source_parser_state_is_kept_from_one_batch_to_the_next(streaming_app, broker, until):
    """The #Fields header comes in one batch, its rows in the next: they parse only with the state
    the first batch wrote."""
    app = streaming_app()

    async def scenario():
        async with agent_named(app, "ingest").test_context() as ingest:
            header = await ingest.put(HEADER, key=LOG.encode(), partition=1, timestamp=RECEIVED_AT,
                                      headers=packing.headers(1, 0))
            await until(acked(header), "the header's batch is acked")
            rows = await ingest.put(ROW, key=LOG.encode(), partition=1, timestamp=RECEIVED_AT,
                                    headers=packing.headers(4, len(HEADER)))
            await until(acked(rows), "the rows' batch is acked")

    asyncio.run(scenario())
    assert dead_letter_reasons(broker) == []
    [observation] = observations(broker)
    assert (observation.server, observation.build, observation.message_keys) == (
        "ex16.contoso.example", "15.1.2507.39", ["<m1@x>"])


def test_a_postfix_message_left_open_by_one_batch_is_completed_by_the_next(streaming_app, broker, until):
    app = streaming_app()

    async def scenario():
        async with agent_named(app, "ingest").test_context() as ingest:
            received = await ingest.put(RECEIVED, key=MAIL_LOG.encode(), timestamp=RECEIVED_AT,
                                        headers=packing.headers(1, 0))
            await until(acked(received), "the received message's batch is acked")
            assert observations(broker) == []  # held open until the queue manager takes it
            queued = await ingest.put(QUEUED, key=MAIL_LOG.encode(), timestamp=RECEIVED_AT,
                                      headers=packing.headers(3, len(RECEIVED)))
            await until(acked(queued), "the queued message's batch is acked")

    asyncio.run(scenario())
    [observation] = observations(broker)
    assert (observation.server, observation.build) == ("mail19.fabrikam.example", "15.2.1544.14")


def test_ingest_writes_its_state_and_acks_only_after_the_broker_acknowledged_what_it_sent(streaming_app, broker, until):
    app = streaming_app()
    broker.holding = True
    parser_states = app.tables["parser-state"]

    async def scenario():
        async with agent_named(app, "ingest").test_context() as ingest:
            record = await ingest.put(HEADER + ROW, key=LOG.encode(), partition=2, timestamp=RECEIVED_AT,
                                      headers=packing.headers(1, 0))
            await until(lambda: broker.waiting_for_acks("mail.observations"), "the agent waits for the ack")
            # The broker has not acknowledged it: the agent waits, with nothing written or acked.
            assert (LOG.encode() not in parser_states.data, record.message.acked) == (True, False)
            broker.release()
            await until(acked(record), "the batch is acked")
            assert LOG.encode() in parser_states.data

    asyncio.run(scenario())


def home(key: bytes) -> int:
    """The partition of mail.observations whose table holds the server `key` (enforce checks it)."""
    return partition_for(key, Settings().partitions)


def observation(build: str, at: datetime, server: str = "ex01.contoso.example") -> bytes:
    seen = ServerObservation.once(server, server, None, at, build, "msgtrk-version", "<a@x>", 100)
    return SERVER_OBSERVATION.encode(records.observation_record(seen))


EX2013 = "15.0.1497.2"  # out of support
EX2019 = "15.2.1748.10"  # supported, but not the newest build


def test_enforce_decides_once_per_change_with_the_server_state_of_earlier_batches(streaming_app, broker, until):
    app = streaming_app()
    seen = [observation(EX2013, datetime(2026, 2, 10, 8, 0, tzinfo=UTC)),
            observation(EX2013, datetime(2026, 2, 10, 8, 1, tzinfo=UTC)),
            observation(EX2019, datetime(2026, 2, 10, 9, 0, tzinfo=UTC))]

    async def scenario():
        async with agent_named(app, "enforce").test_context() as enforce:
            for value in seen:
                event = await enforce.put(value, key=b"ex01.contoso.example", partition=home(b"ex01.contoso.example"))
                await until(acked(event), "the observation's batch is acked")

    asyncio.run(scenario())
    # The second observation changes nothing; the third is the server's second decision.
    assert [(d.version, d.build, d.status, d.first_detected.hour) for d in decisions(broker)] == [
        (1, EX2013, "unsupported", 8), (2, EX2019, "outdated", 8)]


def test_enforce_folds_every_observation_of_a_server_in_a_batch_before_deciding(streaming_app, broker, until):
    app = streaming_app(batch=3)
    seen = [(observation(EX2013, datetime(2026, 2, 10, 8, 0, tzinfo=UTC)), b"ex01.contoso.example"),
            (observation(EX2019, datetime(2026, 2, 10, 9, 0, tzinfo=UTC)), b"ex01.contoso.example"),
            (observation(EX2013, datetime(2026, 2, 10, 8, 30, tzinfo=UTC), "ex02.contoso.example"),
             b"ex02.contoso.example")]

    async def scenario():
        async with agent_named(app, "enforce").test_context() as enforce:
            events = [await enforce.put(value, key=key, partition=home(key)) for value, key in seen]
            await until(acked(*events), "the batch is acked")

    asyncio.run(scenario())
    assert sorted((d.server_id, d.version, d.build, d.first_detected.hour) for d in decisions(broker)) == [
        ("ex01.contoso.example", 1, EX2019, 8), ("ex02.contoso.example", 1, EX2013, 8)]


def test_enforce_decides_every_server_of_a_record_and_refuses_those_of_other_partitions(streaming_app, broker,
                                                                                       until):
    """A record of mail.observations holds the servers of one partition: each is decided there. A
    server whose key belongs to another partition is dead-lettered (its state lives there), the
    others of its record are still decided."""
    app = streaming_app()
    servers = [f"mx{n}.fabrikam.example" for n in range(40)]
    seen = [ServerObservation.once(server, server, None, datetime(2026, 2, 10, 8, n, tzinfo=UTC), EX2013,
                                   "received-id", f"<{n}@x>", 100) for n, server in enumerate(servers)]
    placed = records.observation_records(seen, Settings().partitions)
    partition, record = max(placed, key=lambda placed: len(placed[1]["more"]))
    here = records.observations_from_record(record)
    stranger = next(o for o in seen if home(o.server_id.encode()) != partition)
    record["more"].append(records.observation_record(stranger))

    async def scenario():
        async with agent_named(app, "enforce").test_context() as enforce:
            event = await enforce.put(SERVER_OBSERVATION.encode(record), key=record["server_id"].encode(),
                                      partition=partition)
            await until(acked(event), "the record's batch is acked")

    asyncio.run(scenario())
    assert len(here) > 1
    assert sorted(d.server_id for d in decisions(broker)) == sorted(o.server_id for o in here)
    [reason] = dead_letter_reasons(broker)
    assert reason == (f"observations of 1 servers whose keys belong to other partitions than {partition}, not "
                      f"applied: {stranger.server_id}")


def tails_ending_with(monkeypatch, published):
    """outbox.tails as if mail.decisions ended with `published`; returns what it was asked."""
    asked = []

    async def tail(settings, topic, records):
        asked.append((topic, records))
        return [(b"ex05.contoso.example", b"other"), published]
    monkeypatch.setattr("pipeline.streaming.enforce.tails", tail)
    return asked


def observe_in_batches(app, key, batches, until, before_the_second):
    """An observation of `key` per batch; before the second, `before_the_second` changes the stored
    server-state table as a worker stopped in between left it."""
    async def scenario():
        async with agent_named(app, "enforce").test_context() as enforce:
            for batch in range(batches):
                if batch == 1:
                    before_the_second(app.tables["server-state"].data)
                event = await enforce.put(observation(EX2013, datetime(2026, 2, 10, 8, 0, tzinfo=UTC)),
                                          key=key, partition=home(key))
                await until(acked(event), "the observation's batch is acked")

    asyncio.run(scenario())


def test_enforce_puts_a_batch_s_decisions_in_the_outbox_before_it_stores_states_or_publishes(streaming_app, broker,
                                                                                             until):
    """The outbox value (each new decision with its server's state) reaches the broker first; then
    each state is stored once and the decisions go out, together; then the outbox is emptied. A
    worker killed at any point neither loses a decision nor publishes another content for its
    version."""
    app = streaming_app(batch=2)
    changelog = "pg-unit-server-state-changelog"
    servers = [b"ex01.contoso.example", b"ex02.contoso.example"]

    def steps():
        return [(topic, key if topic != changelog or not key.startswith(OUTBOX) else "outbox",
                 None if value is None else "value") for topic, key, value in broker.sent
                if topic != "mail.observations"]

    async def scenario():
        async with agent_named(app, "enforce").test_context() as enforce:
            broker.holding = True
            events = [await enforce.put(observation(EX2013, datetime(2026, 2, 10, 8, 0, tzinfo=UTC), key.decode()),
                                        key=key, partition=home(key)) for key in servers]
            await until(broker.waiting_for_acks, "the agent waits for the outbox to be acknowledged")
            assert steps() == [(changelog, "outbox", "value")] * 2  # a value per partition, nothing else yet
            broker.release()
            await until(lambda: broker.waiting_for_acks("mail.decisions"), "the agent waits for its decisions' acks")
            assert sorted(map(str, steps()[2:])) == sorted(map(str, [
                *[(changelog, key, "value") for key in servers],
                *[("mail.decisions", key, "value") for key in servers]]))
            broker.holding = False
            broker.release()
            await until(acked(*events), "the batch is acked")

    asyncio.run(scenario())
    assert steps()[6:] == [(changelog, "outbox", None)] * 2
    assert sorted(d.server_id for d in decisions(broker)) == [key.decode() for key in servers]
    stored = dict(app.tables["server-state"].data)
    assert sorted(stored) == servers and all(StoredServer.decode(stored[key]).unpublished == [] for key in servers)


def test_a_worker_publishes_what_its_predecessor_left_in_the_outbox_first(streaming_app, broker, until, monkeypatch,
                                                                         make_decision):
    """A worker stopped with an outbox value written: the next batch of the partition stores its
    states, publishes the decisions mail.decisions does not end with already, and empties it."""
    app = streaming_app()
    key = b"ex01.contoso.example"
    left = {}
    for server in ("ex07.contoso.example", "ex08.contoso.example"):
        state, decision = step(None, ServerObservation.once(server, server, None, datetime(2026, 2, 9, tzinfo=UTC),
                                                            EX2013, "received-id", "<m@x>", 1),
                               PolicyConfig(), load_catalog())
        left[server] = (state, (server.encode(), ENFORCEMENT_DECISION.encode(records.decision_record(decision))))
    published, unpublished = left["ex07.contoso.example"][1], left["ex08.contoso.example"][1]
    asked = tails_ending_with(monkeypatch, published)

    def stop_with_the_outbox_written(store):
        store[outbox_key(home(key), 0)] = outbox_values(list(left.values()))[0]
    observe_in_batches(app, key, 2, until, stop_with_the_outbox_written)
    assert asked == [("mail.decisions", [published, unpublished])]
    assert [d.server_id for d in decisions(broker)] == ["ex01.contoso.example", "ex08.contoso.example"]
    store = app.tables["server-state"].data
    assert outbox_key(home(key), 0) not in store
    assert StoredServer.decode(store[b"ex08.contoso.example"]).state == left["ex08.contoso.example"][0]


def test_enforce_publishes_what_a_stopped_worker_left_unpublished_first(streaming_app, broker, until, monkeypatch,
                                                                         make_decision):
    """A worker stopped between storing a state with decisions and storing it without: those at the
    end of mail.decisions went out already, the others go out before any new one."""
    app = streaming_app()
    published, unpublished = ((server.encode(), ENFORCEMENT_DECISION.encode(records.decision_record(
        replace(make_decision(1, 2), server_id=server))))
        for server in ("ex07.contoso.example", "ex08.contoso.example"))
    asked = tails_ending_with(monkeypatch, published)
    key = b"ex01.contoso.example"

    def stop_with_decisions_in_the_state(store):
        left = StoredServer.decode(store[key])
        store[key] = StoredServer(left.state, [published, unpublished]).encode()
    observe_in_batches(app, key, 3, until, stop_with_decisions_in_the_state)
    # The second batch decides nothing new, yet stores the state without them: the third does not ask.
    assert asked == [("mail.decisions", [published, unpublished])]
    assert [d.server_id for d in decisions(broker)] == ["ex01.contoso.example", "ex08.contoso.example"]
    assert StoredServer.decode(app.tables["server-state"].data[key]).unpublished == []


@pytest.mark.parametrize("name", ["observe", "enforce", "store_decisions", "store_observations", "store_enforcement"])
def test_records_that_do_not_decode_stop_the_worker_past_the_limit(name, streaming_app, broker, until):
    """A bad deploy: one undecodable record is dead-lettered, the next one in a row is one too many."""
    app = streaming_app(batch=2, role=role_of(name), dead_letters=DeadLetterSettings(max_ratio=1.0, max_consecutive=1))

    async def scenario():
        async with agent_named(app, name).test_context() as agent:
            for _ in range(2):
                await agent.put(b"\xc3\x01 written with a schema nobody knows", key=b"k", partition=0)
            await until(lambda: app.crashes, "the worker is stopped")

    asyncio.run(scenario())
    [reason] = app.crashes
    assert isinstance(reason, DeadLetterLimitExceeded)
    assert str(reason).startswith(f"{name}: 2 records in a row could not be read")
    assert len(broker.values("mail.traces.dlq")) == 1


@pytest.mark.parametrize("name", ["observe", "enforce", "store_decisions", "store_observations", "store_enforcement"])
def test_the_batch_that_exceeds_the_dead_letter_limit_is_never_acked(name, streaming_app, until):
    """Its offsets must not be committed as the worker stops, or a restart would read on past it."""
    app = streaming_app(batch=2, role=role_of(name), dead_letters=DeadLetterSettings(max_ratio=1.0, max_consecutive=1))

    async def scenario():
        async with agent_named(app, name).test_context() as agent:
            events = [await agent.put(b"\xc3\x01 written with a schema nobody knows", key=b"k")
                      for _ in range(2)]
            await until(lambda: app.crashes, "the worker is stopped")
        # Leaving the context stops the stream, which closes the agent's take_events if nothing did
        # yet: whatever it acks as it closes is acked by now.
        # Records the stream reads on in the background are acked unprocessed: the process must
        # commit nothing from here on, whatever was acked.
        committed = await app.consumer._commit({TP("mail.observations", 0): 99})
        return events, committed

    events, committed = asyncio.run(scenario())
    assert [event.message.acked for event in events] == [False, False]
    assert committed is False


def test_a_table_that_cannot_be_written_stops_the_worker_with_the_batch_unacked(streaming_app, until, monkeypatch):
    """A full disk under RocksDB: the agent fails on its table write. Faust would restart the agent,
    which would read on past the batch; the worker stops instead, and a restart reads it again."""
    app = streaming_app()

    def full_disk(self):
        raise OSError("IO error: No space left on device: While appending to file: parser-state-1.db/000004.log")

    monkeypatch.setattr("pipeline.streaming.tables.TableBatch.flush", full_disk)

    async def scenario():
        async with agent_named(app, "ingest").test_context() as ingest:
            event = await ingest.put(HEADER + ROW, key=LOG.encode(), partition=1, timestamp=RECEIVED_AT,
                                     headers=packing.headers(1, 0))
            await until(lambda: app.crashes, "the worker is stopped")
        return event

    event = asyncio.run(scenario())
    [reason] = app.crashes
    assert isinstance(reason, OSError) and "No space left on device" in str(reason)
    assert not event.message.acked


def test_enforce_decides_a_partitions_servers_again_when_the_controls_in_force_change(streaming_app, broker, until,
                                                                                      monkeypatch):
    """An outcome on mail.control.applied reaches enforce in its partition: the servers stored there
    are decided again under the exemption it grants, with no observation of their own."""
    app = streaming_app()
    applied = CONTROL_APPLIED.encode(applied_record(
        ControlCommand("c1", "exempt", "ex01.contoso.example", datetime(2026, 4, 1, tzinfo=UTC),
                       until=date(2026, 9, 1), reason="vendor appliance"),
        Outcome(True, "exempt"),
        Controls(exemptions=(Exemption("ex01.contoso.example", date(2026, 9, 1), "vendor appliance"),))))
    to_message = AgentTestWrapper.to_message

    def on_its_topic(agent, key, value, **kwargs):
        message = to_message(agent, key, value, **kwargs)
        if value == applied:
            message.topic = "mail.control.applied"
        return message
    monkeypatch.setattr(AgentTestWrapper, "to_message", on_its_topic)

    async def scenario():
        async with agent_named(app, "enforce").test_context() as enforce:
            seen = await enforce.put(observation(EX2013, datetime(2026, 4, 20, 8, 0, tzinfo=UTC)),
                                     key=b"ex01.contoso.example", partition=home(b"ex01.contoso.example"))
            await until(acked(seen), "the observation's batch is acked")
            control = await enforce.put(applied, key=b"c1", partition=home(b"ex01.contoso.example"))
            await until(acked(control), "the outcome's batch is acked")

    asyncio.run(scenario())
    assert [(d.version, d.stage, d.reason) for d in decisions(broker)][1:] == [
        (2, 0, "exempt: matches ex01.contoso.example until 2026-09-01 (vendor appliance)")]


def test_a_tombstone_on_mail_control_is_skipped_and_is_no_bad_record(streaming_app, broker, until):
    """mail.control is compacted: a tombstone deletes a command's key and is neither applied nor
    dead-lettered, even where no bad record at all is allowed."""
    app = streaming_app(batch=2, partitions=2, dead_letters=DeadLetterSettings(max_ratio=0.0, max_consecutive=0))
    command = ControlCommand("c2", "pause", "contoso.example", datetime(2026, 4, 1, tzinfo=UTC), days=7)

    async def scenario():
        async with agent_named(app, "fold_commands").test_context() as control:
            events = [await control.put(None, key=b"c1"),
                      await control.put(CONTROL_COMMAND.encode(command_record(command)), key=b"c2")]
            await until(acked(*events), "the batch is acked")

    asyncio.run(scenario())
    assert app.crashes == [] and broker.values("mail.traces.dlq") == []
    outcomes = [CONTROL_APPLIED.decode(value) for value in broker.values("mail.control.applied")]
    assert [o["command"]["command_id"] for o in outcomes] == ["c2", "c2"], "its outcome, to each partition"
