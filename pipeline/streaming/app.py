"""The Faust app: mail.logs.raw -> parse -> mail.traces -> observe -> mail.observations -> enforce
-> mail.decisions -> ClickHouse.

Topics carry raw bytes and the agents encode and decode Avro themselves, so a record that does not
decode goes to the dead-letter topic with its position instead of stopping the stream.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import faust

from pipeline.domain import identity, policy
from pipeline.domain.catalog import Catalog
from pipeline.domain.events import ParseError, SourcePosition
from pipeline.domain.parsers import dispatch, envelope
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import ClickHouseSink, connect, create_tables
from pipeline.streaming import records, topics
from pipeline.streaming.avro import (
    DEAD_LETTER,
    ENFORCEMENT_DECISION,
    MESSAGE_TRACE,
    SERVER_OBSERVATION,
    AvroDecodeError,
)

log = logging.getLogger(__name__)

SINK_BATCH_SIZE = 50_000
SINK_BATCH_SECONDS = 1.0


def build_app(settings: Settings, catalog: Catalog) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", partitions=settings.partitions)

    raw_topic, traces_topic = topic(topics.RAW), topic(topics.TRACES)
    dlq_topic, observations_topic = topic(topics.DEAD_LETTERS), topic(topics.OBSERVATIONS)
    decisions_topic = topic(topics.DECISIONS)

    # The parser state per source file (detected format, #Fields header, open messages): raw lines
    # are keyed by file, so the table is co-partitioned with mail.logs.raw.
    table_schema = faust.Schema(key_type=bytes, key_serializer="raw", value_serializer="json")
    sources = app.Table(topics.PARSER_STATE_TABLE, default=None, partitions=settings.partitions, schema=table_schema)
    # The first-seen/policy state per server, co-partitioned with mail.observations (key server_id).
    servers = app.Table(topics.SERVER_STATE_TABLE, default=None, partitions=settings.partitions, schema=table_schema)

    async def dead_letter(event: faust.EventT, reason: str, error: ParseError | None = None) -> None:
        message = event.message
        if error is not None:
            record = records.parse_error_record(error, message.value, message.topic, message.partition, message.offset)
        else:
            record = records.dead_letter_record(reason, message.value or b"", message.topic, message.partition, message.offset)
        log.warning("dead letter from %s/%s/%s: %s", message.topic, message.partition, message.offset,
                    error or reason)
        await dlq_topic.send(key=message.key, value=DEAD_LETTER.encode(record))

    @app.agent(raw_topic)
    async def parse(stream):
        async for event in stream.events():
            message = event.message
            key = (message.key or b"").decode("utf-8", "replace") or f"{message.topic}/{message.partition}"
            unwrapped = envelope.unwrap(message.value or b"", SourcePosition(key))
            if isinstance(unwrapped, ParseError):
                await dead_letter(event, unwrapped.reason, unwrapped)
                continue
            line, position = unwrapped
            source = position.source.encode("utf-8")
            # Lines of syslog formats carry no year: the time the shipper produced them supplies it.
            reference = datetime.fromtimestamp(message.timestamp, tz=timezone.utc) if message.timestamp else None
            state, results = dispatch.parse_line(sources.get(source), line, position, reference)
            sources[source] = state
            for result in results:
                if isinstance(result, ParseError):
                    await dead_letter(event, result.reason, result)
                else:
                    await traces_topic.send(key=source, value=MESSAGE_TRACE.encode(records.trace_record(result)))

    @app.agent(traces_topic)
    async def observe(stream):
        async for event in stream.events():
            try:
                trace = records.trace_from_record(MESSAGE_TRACE.decode(event.message.value or b""))
            except AvroDecodeError as exc:
                await dead_letter(event, str(exc))
                continue
            for observation in identity.observations(trace, settings.policy):
                await observations_topic.send(
                    key=observation.server_id.encode("utf-8"),
                    value=SERVER_OBSERVATION.encode(records.observation_record(observation)),
                )

    @app.agent(observations_topic)
    async def enforce(stream):
        async for event in stream.events():
            try:
                observation = records.observation_from_record(SERVER_OBSERVATION.decode(event.message.value or b""))
            except AvroDecodeError as exc:
                await dead_letter(event, str(exc))
                continue
            key = observation.server_id.encode("utf-8")
            stored = servers.get(key)
            state = policy.ServerState.from_json(stored) if stored else None
            new_state, decision = policy.step(state, observation, settings.policy, catalog)
            servers[key] = new_state.to_json()
            if decision is not None:
                await decisions_topic.send(key=key, value=ENFORCEMENT_DECISION.encode(records.decision_record(decision)))

    sink_state: dict[str, ClickHouseSink] = {}

    @app.task
    async def open_clickhouse() -> None:
        client = await asyncio.to_thread(connect, settings.clickhouse_dsn)
        await asyncio.to_thread(create_tables, client)
        sink_state["sink"] = ClickHouseSink(client)

    @app.agent(decisions_topic)
    async def store_decisions(stream):
        async for batch in stream.take_events(SINK_BATCH_SIZE, within=SINK_BATCH_SECONDS):
            while "sink" not in sink_state:
                await asyncio.sleep(0.1)
            for partition, events in _by_partition(batch).items():
                decisions = [records.decision_from_record(ENFORCEMENT_DECISION.decode(e.message.value)) for e in events]
                token = f"{events[0].message.topic}:{partition}:{events[0].message.offset}-{events[-1].message.offset}"
                await asyncio.to_thread(sink_state["sink"].write_decisions, decisions, token)

    return app


def _by_partition(batch):
    grouped: dict[int, list] = {}
    for event in batch:
        grouped.setdefault(event.message.partition, []).append(event)
    return grouped
