"""The processing agents, each a batch at a time. Every rule they apply lives in pipeline.domain.

    ingest   mail.logs.packed   -> mail.observations   parse, identify and fold (ingest.RawBatch)
    observe  mail.traces        -> mail.observations   identify and fold traces other producers write
    enforce  mail.observations  -> mail.decisions      fold into the first-seen table, decide once per server
             mail.control.applied                  under the pauses and exemptions in force (streaming.controls)

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
import logging
import time
from collections import Counter
from dataclasses import dataclass

import faust

from pipeline.contracts import packing, records
from pipeline.contracts.avro import ENFORCEMENT_DECISION, MESSAGE_TRACE, SERVER_OBSERVATION, SERVER_OBSERVATION_TIMES
from pipeline.contracts.control import CONTROL_APPLIED, controls_from_applied
from pipeline.contracts.topics import partition_for
from pipeline.domain import policy
from pipeline.domain.aggregate import ObservationBatch
from pipeline.domain.catalog import Catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.control import Controls
from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import ServerState
from pipeline.settings import Settings
from pipeline.streaming.controls import CONTROLS_KEY, decode_controls, encode_controls
from pipeline.streaming.dead_letters import DeadLetterLimit, dead_letter, decoded, rejected_line
from pipeline.streaming.failures import batches, stops_worker_on_failure
from pipeline.streaming.ingest import RawBatch
from pipeline.streaming.metrics import Metrics
from pipeline.streaming.outbox import (
    OUTBOX,
    Record,
    StoredServer,
    not_yet_published,
    outbox_entries,
    outbox_key,
    outbox_values,
    tails,
)
from pipeline.streaming.tables import TableBatch, flushed

log = logging.getLogger(__name__)
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
                await flushed(batch.states, batch.open_messages)
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
                pending: list = []
                bad = 0
                states = TableBatch(tables.server_states, decode=StoredServer.decode, encode=StoredServer.encode)
                # Per partition: each holds the same key (TableBatch keeps one value per key).
                in_force: dict[int, TableBatch] = {}
                newest_controls: dict[int, tuple[faust.EventT, dict]] = {}
                by_server: dict[bytes, tuple[faust.EventT, list[ServerObservation]]] = {}
                for event in events:
                    if event.message.topic == applied_topic:
                        applied = await decoded(topics.dead_letters, event, CONTROL_APPLIED, dict, pending,
                                                dead_letters)
                        if applied is not None:
                            newest_controls[event.message.partition] = (event, applied)
                        continue
                    observations = await decoded(topics.dead_letters, event, SERVER_OBSERVATION_TIMES,
                                                 records.observations_from_record, pending, dead_letters)
                    if observations is None:
                        bad += 1
                        continue
                    misplaced = set()
                    for observation in observations:
                        key = observation.server_id.encode("utf-8")
                        if partition_for(key, settings.partitions) == event.message.partition:
                            by_server.setdefault(key, (event, []))[1].append(observation)
                        else:
                            misplaced.add(observation.server_id)
                    if misplaced:
                        # Its state is another partition's: applied here, the server would have two.
                        pending.append(await dead_letter(topics.dead_letters, event, (
                            f"observations of {len(misplaced)} servers whose keys belong to other partitions than "
                            f"{event.message.partition}, not applied: {', '.join(sorted(misplaced)[:5])}")))
                        bad += 1
                outbox = TableBatch(tables.server_states, decode=bytes, encode=bytes)
                await publish_left_in_outbox(states, outbox, {event.message.partition: event for event in events})
                for partition, (event, applied) in newest_controls.items():
                    controls = controls_from_applied(applied)
                    here = in_force[partition] = TableBatch(tables.controls_in_force, decode=decode_controls,
                                                            encode=encode_controls)
                    if controls != here.get(CONTROLS_KEY, event):
                        here.put(CONTROLS_KEY, controls, event)
                        # The partition's servers are decided again under what is now in force.
                        for key, _ in states.scan(b"", event, skip=OUTBOX):
                            by_server.setdefault(key, (event, []))
                configs: dict[int, PolicyConfig] = {}
                stored = {key: states.get(key, event) for key, (event, _) in by_server.items()}
                left_over = [record for server in stored.values() if server for record in server.unpublished]
                if left_over:
                    await publish(not_yet_published(left_over, await tails(
                        settings, topics.decisions.get_topic_name(), left_over)))
                decided: dict[int, tuple[faust.EventT, list[tuple[ServerState, Record]]]] = {}
                stages: Counter[int] = Counter()
                for key, (event, observations) in by_server.items():
                    state = stored[key].state if stored[key] else None
                    partition = event.message.partition
                    if partition not in configs:
                        here = in_force.setdefault(partition, TableBatch(tables.controls_in_force,
                                                                         decode=decode_controls))
                        configs[partition] = (here.get(CONTROLS_KEY, event) or Controls()).in_force(config)
                    in_force_here = configs[partition]
                    for observation in observations:
                        state = policy.observe(state, observation, in_force_here, catalog)
                    assert state is not None  # a server in the batch has an observation or a stored state
                    state, decision = policy.decide(state, in_force_here, catalog)
                    if decision is not None:
                        record = (key, ENFORCEMENT_DECISION.encode(records.decision_record(decision)))
                        decided.setdefault(partition, (event, []))[1].append((state, record))
                        stages[decision.stage] += 1
                    states.put(key, StoredServer(state), event)
                await asyncio.gather(*pending)
                # The new decisions, with their states, are in the outbox before any goes out or any
                # state is stored: the broker has both or neither of a server's state and decision.
                written = []
                for partition, (event, new) in decided.items():
                    for n, value in enumerate(outbox_values(new)):
                        # The partition in the key too: a TableBatch holds one value per key.
                        written.append((event, outbox_key(partition, n)))
                        outbox.put(outbox_key(partition, n), value, event)
                await asyncio.gather(*await flushed(outbox, *in_force.values()))
                sent = await flushed(states)
                await asyncio.gather(*sent, publish([record for _, new in decided.values() for _, record in new]))
                for event, key in written:
                    outbox.delete(key, event)
                await asyncio.gather(*await flushed(outbox))
                for stage, count in stages.items():
                    metrics.decisions.labels(str(stage)).inc(count)
                rejected.inc(bad)

    async def publish_left_in_outbox(states: TableBatch, outbox: TableBatch,
                                     events: dict[int, faust.EventT]) -> None:
        """What a batch of the partitions' previous owner left in their outbox: its states stored,
        the decisions mail.decisions does not end with published, then the outbox emptied."""
        left: list[Record] = []
        for partition, event in events.items():
            for key, value in outbox.scan(outbox_key(partition), event):
                for state, record in outbox_entries(value):
                    states.put(record[0], StoredServer(state), event)
                    left.append(record)
                outbox.delete(key, event)
        if not left:
            return
        log.warning("publishing %d decisions a stopped worker left in the outbox, unless already published", len(left))
        sent = await flushed(states)
        missing = not_yet_published(left, await tails(settings, topics.decisions.get_topic_name(), left))
        await asyncio.gather(*sent, publish(missing))
        await asyncio.gather(*await flushed(outbox))

    async def publish(decided: list[Record]) -> None:
        await asyncio.gather(*[await topics.decisions.send(key=key, value=value) for key, value in decided])

