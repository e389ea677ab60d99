"""Agents that write the report tables: decisions, per-server messages, MTA enforcement and control
commands' outcomes, in batches.

`take_events` acks a batch's events only after the loop body returned, that is after ClickHouse
stored the batch (ClickHouseHandle.write tries until it does). While ClickHouse fails, the sink's
topic is paused on this worker: the backlog waits in Kafka, not in the stream buffers, whose
filling would stall every agent of the worker. Agents that read the same topic (enforce reads
mail.observations) wait with it; the other agents, the web views and the MTAs' decisions go on.
Each insert's rows, and the time until ClickHouse stored it, go to the metrics.

A tombstone on mail.decisions (compacted: it deletes a server's key) is logged and stored nowhere.
`decisions` is the history of what was decided, which the enforcement rows name by version: a
server deleted from the topic was still decided then. And a tombstone has no version, so it
cannot be ordered in `server_state` (newest version wins) against the decision the worker may
publish for the server later, which continues its versions: the report keeps the last decision.
"""
from __future__ import annotations

import asyncio
import logging
import time
import zlib
from functools import partial

import faust

from pipeline.contracts import records
from pipeline.contracts.avro import ENFORCEMENT, ENFORCEMENT_DECISION, SERVER_OBSERVATION, AvroContract
from pipeline.contracts.compacted import is_tombstone
from pipeline.contracts.control import CONTROL_APPLIED
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import insert_decisions, insert_enforcement, insert_observations
from pipeline.sinks.control_log import command_row, config_rows, config_token, insert_control_log
from pipeline.streaming.dead_letters import DeadLetterLimit, decoded
from pipeline.streaming.failures import batches, stops_worker_on_failure
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.storage import ClickHouseHandle

log = logging.getLogger(__name__)
BATCH_SIZE = 50_000
BATCH_SECONDS = 1.0


def dedup_token(topic: str, partition: int, offsets: list[int]) -> str:
    """A batch's deduplication token: its partition's first and last offset, how many it holds and
    a checksum of them all, so that only the same records read again match (a compacted topic, or
    records read again after a pause, may give a batch with the same ends but others between)."""
    checksum = zlib.crc32(",".join(map(str, offsets)).encode("ascii"))
    return f"{topic}:{partition}:{offsets[0]}-{offsets[-1]}:{len(offsets)}:{checksum:08x}"


def register(app: faust.App, topics, clickhouse: ClickHouseHandle, settings: Settings, metrics: Metrics) -> None:
    metrics.watch_writes(clickhouse.health)

    async def store(batch, contract: AvroContract, from_record, insert, table: str,
                    dead_letters: DeadLetterLimit, compacted: bool = False) -> None:
        """`from_record` gives the rows of one record (a ServerObservation holds one per server);
        `compacted`: the topic is, so a tombstone is no bad record (see the module docstring)."""
        pending: list = []
        for (topic, partition), events in _by_partition(batch).items():
            rows = []
            bad = 0
            for event in events:
                if compacted and is_tombstone(event.message.value):
                    log.info("%s/%s/%s: tombstone of %r, nothing to store", topic, partition, event.message.offset,
                             event.message.key)
                    continue
                found = await decoded(topics.dead_letters, event, contract, partial(from_record, message=event.message),
                                      pending, dead_letters)
                if found is not None:
                    rows.extend(found)
                else:
                    bad += 1
            token = dedup_token(topic, partition, [event.message.offset for event in events])
            started = time.perf_counter()
            await clickhouse.write(partial(insert, rows=rows, dedup_token=token), token,
                                   hold=partial(_pause, app, topic, clickhouse.health.paused),
                                   release=partial(_resume, app, topic, clickhouse.health.paused))
            metrics.sink_write_seconds.labels(table).observe(time.perf_counter() - started)
            metrics.sink_batch_rows.labels(table).observe(len(rows))
            metrics.dead_letters.labels(dead_letters.agent).inc(bad)
        await asyncio.gather(*pending)

    @app.agent(topics.decisions)
    async def store_decisions(stream):
        dead_letters = DeadLetterLimit.for_agent("store_decisions", settings.dead_letters)
        async with stops_worker_on_failure(app, "store_decisions"):
            async for batch in batches(stream, BATCH_SIZE, BATCH_SECONDS):
                await store(batch, ENFORCEMENT_DECISION, lambda record, message: [records.decision_from_record(record)],
                            insert_decisions, "decisions", dead_letters, compacted=True)

    @app.agent(topics.observations)
    async def store_observations(stream):
        dead_letters = DeadLetterLimit.for_agent("store_observations", settings.dead_letters)
        async with stops_worker_on_failure(app, "store_observations"):
            async for batch in batches(stream, BATCH_SIZE, BATCH_SECONDS):
                await store(batch, SERVER_OBSERVATION,
                            lambda record, message: records.observation_rows(record), insert_observations,
                            "observations", dead_letters)

    @app.agent(topics.control_applied)
    async def store_control_log(stream):
        dead_letters = DeadLetterLimit.for_agent("store_control_log", settings.dead_letters)
        async with stops_worker_on_failure(app, "store_control_log"):
            async for batch in batches(stream, BATCH_SIZE, BATCH_SECONDS):
                await store(batch, CONTROL_APPLIED, lambda record, message: [command_row(record)], insert_control_log,
                            "control_log", dead_letters)

    @app.task
    async def store_config_controls() -> None:
        # The config file's pauses and exemptions show beside the commands' (their ids fold repeats).
        rows = config_rows(settings.policy)
        await clickhouse.write(partial(insert_control_log, rows=rows, dedup_token=config_token(rows)),
                               "the config file's pauses and exemptions")

    @app.agent(topics.enforcement)
    async def store_enforcement(stream):
        dead_letters = DeadLetterLimit.for_agent("store_enforcement", settings.dead_letters)
        async with stops_worker_on_failure(app, "store_enforcement"):
            async for batch in batches(stream, BATCH_SIZE, BATCH_SECONDS):
                await store(batch, ENFORCEMENT, lambda record, message: [(record, message.partition, message.offset)],
                            insert_enforcement, "enforcement", dead_letters)


def _by_partition(batch) -> dict[tuple[str, int], list]:
    grouped: dict[tuple[str, int], list] = {}
    for event in batch:
        grouped.setdefault((event.message.topic, event.message.partition), []).append(event)
    return grouped


def _pause(app: faust.App, topic: str, shown: set[str]) -> None:
    """Stop fetching the topic's partitions that this worker reads, until _resume (`shown`: what
    /health lists)."""
    paused = {tp for tp in app.consumer.assignment() if tp.topic == topic}
    log.warning("pausing %s partitions %s until ClickHouse stores again", topic, sorted(tp.partition for tp in paused))
    app.consumer.pause_partitions(paused)
    shown.update(f"{tp.topic}/{tp.partition}" for tp in paused)


def _resume(app: faust.App, topic: str, shown: set[str]) -> None:
    # Only what is still assigned: a rebalance while paused may have moved partitions away.
    resumed = {tp for tp in app.consumer.assignment() if tp.topic == topic}
    log.info("resuming %s partitions %s", topic, sorted(tp.partition for tp in resumed))
    app.consumer.resume_partitions(resumed)
    shown.difference_update({name for name in shown if name.startswith(f"{topic}/")})
