"""The processing agents, each a batch at a time. Every rule they apply lives in pipeline.domain.

    ingest   mail.logs.packed   -> mail.observations   parse, identify and fold (ingest.RawBatch)
    observe  mail.traces        -> mail.observations   identify and fold traces other producers write
    enforce  mail.observations  -> mail.decisions      fold into the first-seen table, decide once per server
             mail.control.applied                  under the pauses and exemptions in force (enforce.EnforceBatch,
                                                   streaming.controls)

A line crosses three topics: mail.logs.raw, mail.logs.packed (the repacker, pipeline.streaming.repack,
forwards raw records hundreds at a time), then (folded with the rest of its batch) mail.observations;
a decision that changes goes to mail.decisions. Every agent sends what a batch produced and waits
until the broker acknowledged it, and only then writes its tables; the batch's offsets are
committed after that. A crash at any point repeats work (the downstream steps are idempotent)
but never loses it.

A timer marks the mail.logs.packed partitions that went quiet, so that their idle sources end (see
pipeline.domain.source_ends). Each agent moves its metrics once per batch, after the batch is done.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import faust

from pipeline.contracts import packing, records
from pipeline.contracts.avro import MESSAGE_TRACE, SERVER_OBSERVATION
from pipeline.domain.aggregate import ObservationBatch
from pipeline.domain.catalog import Catalog
from pipeline.domain.events import ServerObservation
from pipeline.settings import Settings
from pipeline.streaming.dead_letters import DeadLetterLimit, decoded, rejected_line
from pipeline.streaming.enforce import EnforceBatch
from pipeline.streaming.failures import batches, stops_worker_on_failure
from pipeline.streaming.ingest import RawBatch
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.tables import flushed

# Raw records per batch: packed records hold up to 256 KiB of lines each (a batch of full ones is
# 64 MiB), while records of a few lines each come by the thousand when many files are followed. A
# short wait keeps the line-to-decision latency low when lines trickle in.
RAW_BATCH, RAW_WITHIN = 256, 0.05
# Observations per batch: folded already, so a batch is many servers' worth.
OBSERVATION_BATCH, OBSERVATION_WITHIN = 5_000, 0.05


@dataclass
class Arrival:
    """The newest record of lines a mail.logs.packed partition brought (monotonic time, offset), and
    whether a quiet marker went out for it."""

    at: float
    offset: int
    marked: bool = False


def register(app: faust.App, topics, tables, settings: Settings, catalog: Catalog, metrics: Metrics) -> None:
    config = settings.policy
    idle_s = settings.stream.source_idle_seconds
    idle_ms = int(idle_s * 1000)
    arrivals: dict[int, Arrival] = {}

    async def send_observations(observations: list[ServerObservation], pending: list) -> None:
        """A record per partition of mail.observations, keyed by its first server (records.observation_records)."""
        pending.extend([
            await topics.observations.send(key=record["server_id"].encode("utf-8"), partition=partition,
                                           value=SERVER_OBSERVATION.encode(record))
            for partition, record in records.observation_records(observations, settings.partitions)
        ])

    @app.agent(topics.packed)
    async def ingest(stream):
        published, rejected = metrics.observations.labels("ingest"), metrics.dead_letters.labels("ingest")
        async with stops_worker_on_failure(app, "ingest"):
            async for events in batches(stream, RAW_BATCH, RAW_WITHIN):
                batch = RawBatch(tables.parser_states, tables.open_messages, config, settings.formats, idle_ms)
                for event in events:
                    batch.add(event)
                now = time.monotonic()
                for partition, offset in batch.line_offsets.items():
                    arrivals[partition] = Arrival(now, offset)
                batch.parse()
                pending: list = [await rejected_line(topics.dead_letters, error) for error in batch.errors]
                observations = batch.observations.observations()
                await send_observations(observations, pending)
                await asyncio.gather(*pending)
                await flushed(batch.states, batch.open_sources, batch.open_messages)
                metrics.raw_records.inc(len(events))
                for format_name, lines in batch.lines.items():
                    metrics.lines.labels(format_name).inc(lines)
                published.inc(len(observations))
                rejected.inc(len(batch.errors))

    if idle_s > 0:
        @app.timer(interval=min(1.0, idle_s / 4))
        async def mark_quiet_partitions() -> None:
            """A marker onto each partition of this worker's input that brought nothing for `idle_s`."""
            packed = topics.packed.get_topic_name()
            assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == packed}
            now = time.monotonic()
            for partition, arrival in list(arrivals.items()):
                if partition not in assigned:
                    del arrivals[partition]
                elif not arrival.marked and now - arrival.at >= idle_s:
                    arrival.marked = True
                    await topics.packed.send(key=b"", value=b"", partition=partition,
                                          headers=packing.quiet_headers(arrival.offset))

    @app.agent(topics.traces)
    async def observe(stream):
        dead_letters = DeadLetterLimit.for_agent("observe", settings.dead_letters)
        published, rejected = metrics.observations.labels("observe"), metrics.dead_letters.labels("observe")
        async with stops_worker_on_failure(app, "observe"):
            async for events in batches(stream, OBSERVATION_BATCH, OBSERVATION_WITHIN):
                folded = ObservationBatch(config)
                pending: list = []
                bad = 0
                for event in events:
                    trace = await decoded(topics.dead_letters, event, MESSAGE_TRACE, records.trace_from_record, pending,
                                          dead_letters)
                    if trace is not None:
                        folded.add_trace(trace)
                    else:
                        bad += 1
                observations = folded.observations()
                await send_observations(observations, pending)
                await asyncio.gather(*pending)
                published.inc(len(observations))
                rejected.inc(bad)

    @app.agent(topics.enforce_input)
    async def enforce(stream):
        dead_letters = DeadLetterLimit.for_agent("enforce", settings.dead_letters)
        rejected = metrics.dead_letters.labels("enforce")
        applied_topic = topics.control_applied.get_topic_name()
        async with stops_worker_on_failure(app, "enforce"):
            async for events in batches(stream, OBSERVATION_BATCH, OBSERVATION_WITHIN):
                batch = EnforceBatch(tables.server_states, tables.controls_in_force, topics.decisions,
                                     topics.dead_letters, applied_topic, settings, catalog, dead_letters)
                for event in events:
                    await batch.add(event)
                await batch.decide()
                await batch.flush()
                for stage, count in batch.stages.items():
                    metrics.decisions.labels(str(stage)).inc(count)
                rejected.inc(batch.bad)
