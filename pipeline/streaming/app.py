"""The Faust app: mail.logs.raw -> ingest -> mail.observations -> enforce -> mail.decisions (and
mail.traces -> observe -> mail.observations for other producers of structured traces), with the
ClickHouse sinks on mail.observations, mail.decisions and mail.enforcement (what the MTAs applied).

Topics carry raw bytes and the agents encode and decode Avro themselves, so a record that does not
decode goes to the dead-letter topic with its position instead of stopping the stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TableT

from pipeline.domain.catalog import Catalog
from pipeline.settings import Settings
from pipeline.streaming import agents, sink_agents, topics
from pipeline.streaming.storage import ClickHouseHandle
from pipeline.streaming.transport import InOrderTransport
from pipeline.web import views


@dataclass(frozen=True)
class Tables:
    # The parser state per source (format, #Fields header, learnt host names, open header block)
    # and Postfix's open messages (key source NUL queue id): both keyed by source, so co-partitioned
    # with mail.logs.raw.
    parser_states: TableT
    open_messages: TableT
    # The first-seen/policy state per server, co-partitioned with mail.observations (key server_id).
    server_states: TableT


@dataclass(frozen=True)
class Topics:
    raw: faust.TopicT
    traces: faust.TopicT
    dead_letters: faust.TopicT
    observations: faust.TopicT
    decisions: faust.TopicT
    enforcement: faust.TopicT


def health(clickhouse: ClickHouseHandle) -> dict:
    """What /health answers: ok, or degraded while ClickHouse writes fail (their partitions paused)."""
    writes = clickhouse.health.as_json()
    return {"status": "degraded" if writes["failing_for_s"] is not None else "ok",
            "clickhouse_writes": writes, "paused_partitions": sorted(clickhouse.health.paused)}


class PatchgateApp(faust.App):
    """Faust's app, consuming through the transport that keeps each partition's records in order."""

    def _new_transport(self) -> InOrderTransport:
        return InOrderTransport(self.conf.broker_consumer, self)


def build_app(settings: Settings, catalog: Catalog, store: str = "rocksdb://",
              clickhouse: ClickHouseHandle | None = None) -> faust.App:
    """The worker's app. Tests pass "memory://" tables and a ClickHouse handle they opened themselves."""
    app = PatchgateApp(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        store=store,
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        # Messages an agent sends are published when the offsets of what it read are committed
        # (at-least-once without loss); this interval is therefore also the latency of each hop.
        broker_commit_interval=0.25,
        # A worker that died (kill -9, lost host) hands its partitions over after this long;
        # Kafka's 45-60 s defaults would stall the replacement for a minute.
        broker_session_timeout=15.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        # Agents send a batch's records at once and then wait for the acknowledgement: a short
        # linger still puts them in one request per partition, and the wait stays short.
        producer_linger=0.002,
        producer_max_batch_size=1_000_000,
        # Packed raw records are up to 256 KiB: fetch several per partition and request, but let a
        # stream hold no more than 1,024 unprocessed ones (Faust's 4,096 were 1 GiB of prefetch).
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=1024,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=settings.partitions)

    wired = Topics(topic(topics.RAW), topic(topics.TRACES), topic(topics.DEAD_LETTERS),
                   topic(topics.OBSERVATIONS), topic(topics.DECISIONS), topic(topics.ENFORCEMENT))

    def table(name: str) -> TableT:
        # Keys and values are raw bytes (the bytes type also makes the changelog and recovery read
        # them raw); the agents encode values as JSON themselves, a batch at a time.
        return app.Table(name, default=None, partitions=settings.partitions, key_type=bytes, value_type=bytes)

    tables = Tables(table(topics.PARSER_STATE_TABLE), table(topics.OPEN_MESSAGES_TABLE),
                    table(topics.SERVER_STATE_TABLE))

    if clickhouse is None:
        clickhouse = ClickHouseHandle(settings.clickhouse_dsn)
        app.task(clickhouse.open)
    handle = clickhouse

    @app.task
    async def give_up_failing_writes_on_stop() -> None:
        # Faust's stop first waits for every batch in hand to be acked: a sink retrying a failing
        # write would hold that wait for as long as ClickHouse fails.
        await app.wait_until_stopped()
        handle.stop()

    agents.register(app, wired, tables, settings, catalog)
    sink_agents.register(app, wired, clickhouse, settings)
    views.register(app, clickhouse.read, lambda: health(clickhouse))
    return app
