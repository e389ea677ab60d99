"""The metrics as the worker wires them (processing_app), read the way Prometheus reads them (GET /metrics
on the app's web server, parsed as exposition text) while the agents run in Faust's test_context:
what a batch moves, and what is read at the scrape (consumer lag, table keys, write failures)."""
import asyncio
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

import faust
import rocksdict
from aiohttp.test_utils import TestClient, TestServer
from faust.transport.consumer import Consumer
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from pipeline.contracts import packing, records
from pipeline.contracts.avro import ENFORCEMENT_DECISION, SERVER_OBSERVATION
from pipeline.contracts.topics import partition_for
from pipeline.domain.events import ServerObservation
from pipeline.settings import Settings
from pipeline.streaming.metrics import Metrics, stored_keys
from pipeline.streaming.storage import ClickHouseHandle

RECEIVED_AT = 1_771_300_000.0
LOG = "/logs/MSGTRK_EX16.LOG"
LOG_LINES = (b"#Software: Microsoft Exchange Server\r\n#Version: 15.01.2507.039\r\n"
             b"#Fields: date-time,client-hostname,server-hostname,event-id,message-id,total-bytes\r\n"
             b"2026-02-10T08:00:01.000Z,app1.contoso.example,EX16.contoso.example,RECEIVE,<m1@x>,100\r\n")
NOT_A_LOG = b"this is not a line of any mail log\n"
UNDECODABLE = b"\xc3\x01 written with a schema nobody knows"
# The partition whose server-state table holds ex01 (enforce refuses a server's observation elsewhere).
EX01_HOME = partition_for(b"ex01.contoso.example", Settings().partitions)


def agent_named(app, name):
    [agent] = [agent for full_name, agent in app.agents.items() if full_name.endswith(f".{name}")]
    return agent


def acked(*events):
    return lambda: all(event.message.acked for event in events)


class Scraper:
    """GET /metrics (and /healthz) on the app's web server, as Prometheus and a probe would."""

    def __init__(self, app):
        self.client = TestClient(TestServer(app.web.web_app))

    async def __aenter__(self):
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc):
        await self.client.close()

    async def samples(self) -> dict[tuple[str, frozenset], float]:
        response = await self.client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(await response.text()) for sample in family.samples}

    async def healthz(self) -> int:
        return (await self.client.get("/healthz")).status


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def observation(build: str, at: datetime) -> bytes:
    seen = ServerObservation.once("ex01.contoso.example", "ex01.contoso.example", None, at, build, "msgtrk-version",
                                  "<a@x>", 100)
    return SERVER_OBSERVATION.encode(records.observation_record(seen))


def test_an_ingest_batch_counts_its_records_lines_by_format_observations_and_dead_letters(streaming_app, until):
    app = streaming_app(batch=2)

    async def scenario():
        async with Scraper(app) as scraper:
            before = await scraper.samples()
            async with agent_named(app, "ingest").test_context() as ingest:
                events = [await ingest.put(LOG_LINES, key=LOG.encode(), partition=1, timestamp=RECEIVED_AT,
                                           headers=packing.headers(1, 0)),
                          await ingest.put(NOT_A_LOG, key=b"/logs/other.log", partition=1, timestamp=RECEIVED_AT,
                                           headers=packing.headers(1, 0))]
                await until(acked(*events), "the batch is acked")
            return before, await scraper.samples()

    before, after = asyncio.run(scenario())
    assert value(before, "patchgate_raw_records_total") == 0
    assert value(after, "patchgate_raw_records_total") == 2
    assert value(after, "patchgate_lines_total", format="msgtrk") == 4
    assert value(after, "patchgate_lines_total", format="unknown") == 1
    assert value(after, "patchgate_observations_total", agent="ingest") == 1
    assert value(after, "patchgate_dead_letters_total", agent="ingest") == 1
    # Both sources' parser states, read from the store at the scrape.
    assert value(after, "patchgate_table_keys", table="parser-state") == len(app.tables["parser-state"].data) >= 2


def test_enforce_counts_decisions_by_stage_and_its_dead_letters(streaming_app, broker, until):
    app = streaming_app(batch=3)

    async def scenario():
        async with Scraper(app) as scraper, agent_named(app, "enforce").test_context() as enforce:
            events = [await enforce.put(observation("15.0.1497.2", datetime(2026, 2, 10, 8, 0, tzinfo=UTC)),
                                        key=b"ex01.contoso.example", partition=EX01_HOME),
                      await enforce.put(UNDECODABLE, key=b"k", partition=3),
                      await enforce.put(observation("15.0.1497.2", datetime(2026, 2, 10, 8, 1, tzinfo=UTC)),
                                        key=b"ex01.contoso.example", partition=EX01_HOME)]
            await until(acked(*events), "the batch is acked")
            return await scraper.samples()

    samples = asyncio.run(scenario())
    published = Counter(str(ENFORCEMENT_DECISION.decode(v)["stage"]) for v in broker.values("mail.decisions"))
    assert sum(published.values()) == 1
    assert {stage: value(samples, "patchgate_decisions_total", stage=stage) for stage in published} == published
    assert value(samples, "patchgate_dead_letters_total", agent="enforce") == 1


def test_a_sink_insert_is_measured_once_stored_and_healthz_says_503_while_writes_fail(
        streaming_app, until, tmp_path, make_decision, failing_inserts, monkeypatch):
    tries = failing_inserts.tries
    handle = ClickHouseHandle(f"chdb://{tmp_path}/ch")
    app = streaming_app(clickhouse=handle, batch=2)
    monkeypatch.setattr(app.consumer, "assignment", lambda: {TP("mail.decisions", 0)})

    async def scenario():
        await handle.open()
        try:
            async with Scraper(app) as scraper, agent_named(app, "store_decisions").test_context() as sink:
                events = [await sink.put(ENFORCEMENT_DECISION.encode(records.decision_record(make_decision(n, 1))),
                                         key=b"k") for n in (1, 2)]
                await until(lambda: len(tries) >= 2, "the write is tried again")
                during = await scraper.healthz(), await scraper.samples()
                failing_inserts.failing = False
                await until(acked(*events), "the batch is stored and acked")
                return during, await scraper.healthz(), await scraper.samples()
        finally:
            await handle.close()

    (status_during, during), status_after, after = asyncio.run(scenario())
    assert (status_during, status_after) == (503, 200)
    assert not value(during, "patchgate_sink_batch_rows_count", table="decisions")  # not stored yet
    assert value(during, "patchgate_clickhouse_write_failures_total") >= 1
    assert value(after, "patchgate_clickhouse_write_failures_total") == handle.health.failures == len(tries) - 1
    assert value(after, "patchgate_sink_batch_rows_count", table="decisions") == 1
    assert value(after, "patchgate_sink_batch_rows_sum", table="decisions") == 2
    assert value(after, "patchgate_sink_batch_rows_bucket", table="decisions", le="1.0") == 0
    assert value(after, "patchgate_sink_write_seconds_count", table="decisions") == 1
    assert value(after, "patchgate_sink_write_seconds_sum", table="decisions") > 0


def test_consumer_lag_per_assigned_partition_is_read_at_each_scrape(streaming_app, monkeypatch):
    app = streaming_app()
    raw = [TP("mail.logs.raw", partition) for partition in range(3)]
    highwaters = {raw[0]: 120, raw[1]: 50, raw[2]: None}  # partition 2: not fetched from yet
    monkeypatch.setattr(app.consumer, "assignment", lambda: set(raw))
    monkeypatch.setattr(app.consumer, "highwater", highwaters.__getitem__)
    app.consumer._committed_offset[raw[0]] = 100
    app.consumer._read_offset[raw[1]] = 9  # nothing committed yet: read up to 9

    async def scenario():
        async with Scraper(app) as scraper:
            first = await scraper.samples()
            app.consumer._committed_offset[raw[0]] = 120
            return first, await scraper.samples()

    first, second = asyncio.run(scenario())
    lag = {labels: v for (name, labels), v in first.items() if name == "patchgate_consumer_lag"}
    assert lag == {frozenset({("group", "pg-unit"), ("topic", "mail.logs.raw"), ("partition", "0")}): 20,
                   frozenset({("group", "pg-unit"), ("topic", "mail.logs.raw"), ("partition", "1")}): 40}
    assert value(second, "patchgate_consumer_lag", group="pg-unit", topic="mail.logs.raw", partition="0") == 0


def test_one_registry_shows_the_lag_of_each_app_of_the_process_apart(tmp_path, monkeypatch):
    """`patchgate run`: the worker's and the sink's consumer groups both read mail.observations."""
    metrics = Metrics()
    observations = TP("mail.observations", 0)
    for app_id, committed in (("pg-unit", 90), ("pg-unit-sink", 60)):
        app = faust.App(app_id, broker="kafka://127.0.0.1:1", store="memory://")
        monkeypatch.setattr(app.consumer, "assignment", lambda: {observations})
        monkeypatch.setattr(app.consumer, "highwater", lambda tp: 100)
        cast(Consumer, app.consumer)._committed_offset[observations] = committed
        metrics.watch(app)
    [family] = [family for family in metrics.registry.collect() if family.name == "patchgate_consumer_lag"]
    assert {(sample.labels["group"], sample.value) for sample in family.samples} == {
        ("pg-unit", 10), ("pg-unit-sink", 40)}


def test_a_consumer_not_started_yet_shows_no_lag(streaming_app):
    app = streaming_app()

    async def scenario():
        async with Scraper(app) as scraper:
            return await scraper.samples()

    samples = asyncio.run(scenario())
    assert [key for key in samples if key[0] == "patchgate_consumer_lag"] == []
    assert value(samples, "patchgate_table_keys", table="server-state") == 0


def test_rocksdb_stores_are_counted_by_the_estimate_of_each_partition_database(tmp_path):
    databases = {partition: rocksdict.Rdict(str(tmp_path / str(partition))) for partition in (0, 5)}
    for partition, count in ((0, 3), (5, 2)):
        for key in range(count):
            databases[partition][b"key-%d" % key] = b"value"
    try:
        assert stored_keys(SimpleNamespace(_dbs=databases)) == 5  # as Faust's RocksDB store keeps them
    finally:
        for database in databases.values():
            database.close()
