"""The Faust apps, one per role.

The worker's app (consumer group `app_id`) holds the processing agents and their tables:
mail.logs.raw -> ingest -> mail.observations -> enforce -> mail.decisions (and mail.traces ->
observe -> mail.observations for other producers of structured traces). Any number of workers,
on any machines, share its partitions.

The sink's app (consumer group `<app_id>-sink`) holds the ClickHouse sinks on mail.observations,
mail.decisions and mail.enforcement (what the MTAs applied) and serves the web port: with the
embedded engine exactly one runs (it owns the folder), with a ClickHouse server any number.

`patchgate run` runs both apps in one process. Each app being its own consumer group, a site can
go from one process to several workers and sinks, and back, without either re-reading the other's
topics.

Topics carry raw bytes and the agents encode and decode Avro themselves, so a record that does not
decode goes to the dead-letter topic with its position instead of stopping the stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import faust
from faust.types import TableT
from faust.types.auth import CredentialsT

from pipeline.contracts import topics
from pipeline.domain.catalog import Catalog
from pipeline.kafka_connection import KafkaConnection
from pipeline.settings import Settings
from pipeline.streaming import agents, controls, sink_agents
from pipeline.streaming.metrics import Metrics
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
    # The pauses and exemptions in force, one key per partition of mail.control.applied (read by
    # enforce beside mail.observations), and the control agent's Controls (mail.control's one partition).
    controls_in_force: TableT
    control_state: TableT


@dataclass(frozen=True)
class Topics:
    # What ingest reads: mail.logs.raw as the repacker forwards it (pipeline.streaming.repack).
    packed: faust.TopicT
    traces: faust.TopicT
    dead_letters: faust.TopicT
    observations: faust.TopicT
    decisions: faust.TopicT
    enforcement: faust.TopicT
    control: faust.TopicT
    control_applied: faust.TopicT
    # What enforce reads: mail.observations and mail.control.applied, co-partitioned.
    enforce_input: faust.TopicT


def health(clickhouse: ClickHouseHandle, worker: faust.App | None = None) -> dict:
    """What the sink's /health answers: ok, or degraded while ClickHouse writes fail (their
    partitions paused); with the worker of the same process (`patchgate run`), its state too."""
    writes = clickhouse.health.as_json()
    answer: dict = {"status": "degraded" if writes["failing_for_s"] is not None else "ok",
                    "clickhouse_writes": writes, "paused_partitions": sorted(clickhouse.health.paused)}
    if worker is not None:
        joined = answer["worker"] = worker_health(worker)
        if joined["status"] != "ok":
            answer["status"] = joined["status"]
    return answer


class PatchgateApp(faust.App):
    """Faust's app, consuming through the transport that keeps each partition's records in order.
    `gapless_topics`: the topics where every offset holds a record (see streaming.transport)."""

    def __init__(self, *args, gapless_topics: frozenset[str] = frozenset(), **kwargs):
        self.gapless_topics = gapless_topics
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> InOrderTransport:
        return InOrderTransport(self.conf.broker_consumer, self)


class Role(StrEnum):
    """What a process runs (see the module docstring)."""

    WORKER = "worker"
    SINK = "sink"
    RUN = "run"


def build_apps(settings: Settings, catalog: Catalog, role: Role) -> list[faust.App]:
    """The Faust apps of one process: the worker's, the sink's, or both (the sink serving the web
    port then, its views reading the ClickHouse handle both share)."""
    metrics = Metrics()  # one registry for the process: in `run`, the sink's /metrics shows both apps
    if role is Role.WORKER:
        return [processing_app(settings, catalog, metrics=metrics)]
    if role is Role.SINK:
        return [sink_app(settings, catalog, metrics=metrics)]
    worker = processing_app(settings, catalog, metrics=metrics, web=False)
    return [worker, sink_app(settings, catalog, metrics=metrics, worker=worker)]


def processing_app(settings: Settings, catalog: Catalog, store: str = "rocksdb://", web: bool = True,
                   metrics: Metrics | None = None) -> faust.App:
    """The processing agents and their tables, in the consumer group `settings.app_id`. Tests pass
    "memory://" tables."""
    app = _faust_app(settings, settings.app_id, settings.data_dir / "faust", web, store=store)
    wired = _topics(app, settings)

    def table(name: str, partitions: int = settings.partitions) -> TableT:
        # Keys and values are raw bytes (the bytes type also makes the changelog and recovery read
        # them raw); the agents encode values as JSON themselves, a batch at a time.
        return app.Table(name, default=None, partitions=partitions, key_type=bytes, value_type=bytes)

    tables = Tables(table(topics.PARSER_STATE_TABLE), table(topics.OPEN_MESSAGES_TABLE),
                    table(topics.SERVER_STATE_TABLE), table(topics.CONTROLS_IN_FORCE_TABLE),
                    table(topics.CONTROL_STATE_TABLE, partitions=1))
    metrics = metrics or Metrics()
    metrics.watch(app)
    agents.register(app, wired, tables, settings, catalog, metrics)
    controls.register(app, wired.control, wired.control_applied, wired.dead_letters, tables.control_state, settings)
    if web:
        views.register_ops(app, lambda: worker_health(app), metrics, settings)
    return app


def worker_health(app: faust.App) -> dict:
    """What a worker's /health answers: ok once it has joined the group, with the partitions it
    holds (a worker that holds none is healthy too: more workers than partitions stand by)."""
    if not app.consumer_generation_id:
        return {"status": "starting"}
    return {"status": "ok", "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in app.consumer.assignment())}


def sink_app(settings: Settings, catalog: Catalog, clickhouse: ClickHouseHandle | None = None, web: bool = True,
             metrics: Metrics | None = None, worker: faust.App | None = None) -> faust.App:
    """The ClickHouse sinks and the web views, in the consumer group `topics.sink_group(settings)`.
    Tests pass a ClickHouse handle they opened themselves."""
    app = _faust_app(settings, topics.sink_group(settings), settings.data_dir / "faust-sink", web)
    wired = _topics(app, settings)
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

    metrics = metrics or Metrics()
    metrics.watch(app)
    sink_agents.register(app, wired, clickhouse, settings, metrics)
    views.register_ops(app, lambda: health(handle, worker), metrics, settings)
    views.register_reports(app, clickhouse.read, settings, catalog)
    return app


def _faust_app(settings: Settings, app_id: str, datadir: Path, web: bool, store: str = "memory://") -> faust.App:
    return PatchgateApp(
        app_id,
        gapless_topics=frozenset(spec.name for spec in topics.pipeline_topics(settings) if not spec.compacted),
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings.kafka),
        # Topics are made in one place, `patchgate topics`, with the replication the settings ask
        # for, by the one role allowed to: Faust would create a table's changelog itself (with
        # its own replication) when the topic is not in the metadata it happens to hold, which a
        # worker without the right to create topics is refused, stopping it.
        topic_allow_declare=False,
        # The leader topic ("<app id>-__assignor-__leader") serves only timers that run on one
        # worker of the group; none does, and without it there is one topic less to create and grant.
        topic_disable_leader=True,
        store=store,
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        # Messages an agent sends are published when the offsets of what it read are committed
        # (at-least-once without loss); this interval is therefore also the latency of each hop.
        broker_commit_interval=0.25,
        # A worker that died (kill -9, lost host) hands its partitions over after this long;
        # Kafka's 45-60 s defaults would stall the replacement for a minute.
        broker_session_timeout=settings.session_timeout_seconds,
        # A consumer that joined its group before its topics were in its metadata (just created, as
        # at a first start) holds no partitions until the next refresh: 10 s rather than Kafka's 5
        # minutes (a sink started beside new topics idled that long, and a test timed out).
        consumer_metadata_max_age_ms=10_000,
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
        # Another worker keeps a copy of each table partition (read from its changelog as it is
        # written): when a worker dies, the one taking over has the state at hand instead of
        # replaying the changelog from its start.
        table_standby_replicas=settings.standby_replicas,
        web_enabled=web,
        # Faust's own /table pages would serve the tables' rows (every server's state) and /router
        # the workers' addresses; nothing here routes requests to the worker holding a key.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
    )


def faust_credentials(connection: KafkaConnection) -> CredentialsT | None:
    """The connection as Faust takes it (it hands it on to every aiokafka client it makes)."""
    if connection.uses_sasl:
        return faust.SASLCredentials(username=connection.sasl_username, password=connection.sasl_password,
                                     ssl_context=connection.ssl_context, mechanism=connection.sasl_mechanism)
    if connection.uses_tls:
        return faust.SSLCredentials(connection.ssl_context)
    return None


def _topics(app: faust.App, settings: Settings) -> Topics:
    def topic(*names: str, partitions: int = settings.partitions) -> faust.TopicT:
        return app.topic(*map(settings.topic, names), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=partitions)

    return Topics(topic(topics.PACKED), topic(topics.TRACES), topic(topics.DEAD_LETTERS),
                  topic(topics.OBSERVATIONS), topic(topics.DECISIONS), topic(topics.ENFORCEMENT),
                  topic(topics.CONTROL, partitions=1), topic(topics.CONTROL_APPLIED),
                  topic(topics.OBSERVATIONS, topics.CONTROL_APPLIED))
