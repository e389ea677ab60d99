"""The ClickHouse sink agents as the sink wires them (sink_app), each run by Faust's test_context
on an in-memory channel, writing to the embedded engine (chdb) in tmp_path: what a batch stores,
the deduplication token it carries, and when its records are acked."""
import asyncio
from datetime import UTC, datetime

import pytest
from faust.types import TP

from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT, ENFORCEMENT_DECISION, SERVER_OBSERVATION
from pipeline.domain.events import ServerObservation
from pipeline.settings import DeadLetterSettings
from pipeline.sinks import clickhouse as tables
from pipeline.sinks.queries import run_sql
from pipeline.streaming.app import health
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.sink_agents import dedup_token
from pipeline.streaming.storage import ClickHouseHandle

AT = datetime(2026, 2, 10, 8, 0, tzinfo=UTC)


def agent_named(app, name):
    [agent] = [agent for full_name, agent in app.agents.items() if full_name.endswith(f".{name}")]
    return agent


def acked(*events):
    return lambda: all(event.message.acked for event in events)


def decision_record(make_decision, version):
    return ENFORCEMENT_DECISION.encode(records.decision_record(make_decision(version, 1)))


def observation_record(version):
    seen = ServerObservation.once("ex01.contoso.example", "ex01.contoso.example", None, AT, "15.0.1497.2",
                                  "msgtrk-version", f"<m{version}@x>", 100)
    return SERVER_OBSERVATION.encode(records.observation_record(seen))


def enforcement_record(version):
    return ENFORCEMENT.encode({"server_id": "ex01.contoso.example", "hostname": "ex01.contoso.example", "org": None,
                               "at": AT, "action": "throttle", "stage": 2, "decision_version": version,
                               "client_address": "192.0.2.7", "helo_name": None})


# Per sink agent: its records, and the table its rows land in.
SINKS = {
    "store_decisions": (lambda make_decision, n: decision_record(make_decision, n), "decisions"),
    "store_observations": (lambda make_decision, n: observation_record(n), "server_messages"),
    "store_enforcement": (lambda make_decision, n: enforcement_record(n), "enforcement"),
}


def rows(handle, table):
    return handle.read(lambda client: run_sql(client, f"SELECT count() FROM {table}")["rows"][0][0])


@pytest.mark.parametrize("name", sorted(SINKS))
def test_batches_are_stored_once_each_also_when_read_again_after_a_restart(name, streaming_app, until, tmp_path,
                                                                            make_decision):
    """Two batches, then the same two again (a worker that stopped before committing their offsets)."""
    record, table = SINKS[name]
    handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
    app = streaming_app(clickhouse=handle)

    async def scenario():
        await handle.open()
        stored = []
        try:
            for _ in range(2):
                async with agent_named(app, name).test_context() as sink:  # offsets start at 0 each time
                    for n in (1, 2):
                        event = await sink.put(record(make_decision, n), key=b"ex01.contoso.example")
                        await until(acked(event), f"batch {n} is stored and acked")
                stored.append(await rows(handle, table))
        finally:
            await handle.close()
        return stored

    assert asyncio.run(scenario()) == [2, 2]


def test_each_partition_of_a_batch_is_stored_with_a_token_naming_its_offsets(streaming_app, until, tmp_path,
                                                                            make_decision, monkeypatch):
    tokens = []

    def insert_decisions(client, rows, dedup_token):
        tokens.append((dedup_token, [decision.version for decision in rows]))
        tables.insert_decisions(client, rows, dedup_token)
    monkeypatch.setattr("pipeline.streaming.sink_agents.insert_decisions", insert_decisions)
    handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
    app = streaming_app(clickhouse=handle, batch=3)

    async def scenario():
        await handle.open()
        try:
            async with agent_named(app, "store_decisions").test_context() as sink:
                events = [await sink.put(decision_record(make_decision, n), key=b"k", partition=partition)
                          for n, partition in ((1, 0), (2, 1), (3, 0))]
                await until(acked(*events), "the batch is stored and acked")
            return await rows(handle, "decisions")
        finally:
            await handle.close()

    assert asyncio.run(scenario()) == 3
    assert sorted(tokens) == [(dedup_token("mail.decisions", 0, [0, 2]), [1, 3]),
                              (dedup_token("mail.decisions", 1, [1]), [2])]
    assert dedup_token("mail.decisions", 0, [0, 2]).startswith("mail.decisions:0:0-2:2:")


def test_a_token_matches_only_the_same_records_read_again():
    assert dedup_token("mail.decisions", 0, [5, 6, 9]) == dedup_token("mail.decisions", 0, [5, 6, 9])
    assert dedup_token("mail.decisions", 0, [5, 6, 9]) != dedup_token("mail.decisions", 0, [5, 7, 9])
    assert dedup_token("mail.decisions", 0, [5, 9]) != dedup_token("mail.decisions", 0, [5, 6, 9])


def test_while_clickhouse_fails_the_topic_is_paused_and_the_batch_unacked_until_stored(
        streaming_app, until, tmp_path, make_decision, failing_inserts, monkeypatch):
    tries = failing_inserts.tries
    handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
    app = streaming_app(clickhouse=handle)
    # This worker's partitions (Faust learns them from the broker).
    monkeypatch.setattr(app.consumer, "assignment",
                        lambda: {TP("mail.decisions", 0), TP("mail.decisions", 1), TP("mail.observations", 0)})

    async def scenario():
        await handle.open()
        try:
            async with agent_named(app, "store_decisions").test_context() as sink:
                event = await sink.put(decision_record(make_decision, 1), key=b"k")
                await until(lambda: len(tries) >= 3, "the write is tried again")
                # ClickHouse refuses every try: nothing was stored, so the batch must not be acked.
                during = health(handle), event.message.acked
                failing_inserts.failing = False
                await until(acked(event), "the batch is stored and acked")
                after = health(handle)
            return during, after, await rows(handle, "decisions")
        finally:
            await handle.close()

    (degraded, acked_while_failing), ok, stored = asyncio.run(scenario())
    assert (degraded["status"], degraded["paused_partitions"], acked_while_failing) == (
        "degraded", ["mail.decisions/0", "mail.decisions/1"], False)
    assert (ok["status"], ok["paused_partitions"], stored) == ("ok", [], 1)
    assert set(tries) == {dedup_token("mail.decisions", 0, [0])}  # every try with the same token



def test_a_tombstone_on_mail_decisions_is_stored_nowhere_and_is_no_bad_record(streaming_app, broker, until, tmp_path,
                                                                              make_decision, monkeypatch):
    """Not dead-lettered, and not counted towards the limit: with a limit of no bad record at all,
    a batch of tombstones and a batch with decisions around one are stored and acked."""
    made = []

    class Recorded(Metrics):
        def __init__(self):
            super().__init__()
            made.append(self)
    monkeypatch.setattr("pipeline.streaming.app.Metrics", Recorded)
    handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
    app = streaming_app(clickhouse=handle, batch=3, dead_letters=DeadLetterSettings(max_ratio=0.0, max_consecutive=0))
    key = b"ex13mbx01.contoso.example"

    async def scenario():
        await handle.open()
        try:
            async with agent_named(app, "store_decisions").test_context() as sink:
                only = [await sink.put(None, key=key) for _ in range(3)]
                await until(acked(*only), "the batch of tombstones is acked")
                around = [await sink.put(decision_record(make_decision, 1), key=key), await sink.put(None, key=key),
                          await sink.put(decision_record(make_decision, 2), key=key)]
                await until(acked(*around), "the batch with a tombstone is stored and acked")
            return await rows(handle, "decisions")
        finally:
            await handle.close()

    assert asyncio.run(scenario()) == 2
    assert app.crashes == [] and broker.values("mail.traces.dlq") == []
    assert made[0].registry.get_sample_value("patchgate_dead_letters_total", {"agent": "store_decisions"}) == 0


def test_every_server_of_a_packed_observation_record_is_stored(streaming_app, until, tmp_path):
    servers = ["ex01.contoso.example", "ex02.contoso.example", "mx.fabrikam.example"]
    seen = [ServerObservation.once(server, server, None, AT, "15.0.1497.2", "msgtrk-version", f"<m{n}@x>", 100)
            for n, server in enumerate(servers)]
    [(_, record)] = records.observation_records(seen, partitions=1)
    handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
    app = streaming_app(clickhouse=handle)

    async def scenario():
        await handle.open()
        try:
            async with agent_named(app, "store_observations").test_context() as sink:
                event = await sink.put(SERVER_OBSERVATION.encode(record), key=servers[0].encode())
                await until(acked(event), "the record is stored and acked")
            return await handle.read(lambda client: run_sql(
                client, "SELECT server_id, message_key FROM server_messages ORDER BY server_id")["rows"])
        finally:
            await handle.close()

    assert asyncio.run(scenario()) == [[server, f"<m{n}@x>"] for n, server in enumerate(servers)]
