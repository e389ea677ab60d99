"""Agents that write the report tables: decisions, per-server messages and MTA enforcement, in batches.

`take_events` acks a batch's events only after the loop body returned, that is after ClickHouse
stored the batch (ClickHouseHandle.write retries until it does).
"""
from __future__ import annotations

import asyncio
from functools import partial

import faust

from pipeline.sinks.clickhouse import insert_decisions, insert_enforcement, insert_observations
from pipeline.streaming import records
from pipeline.streaming.avro import ENFORCEMENT, ENFORCEMENT_DECISION, SERVER_OBSERVATION, AvroContract
from pipeline.streaming.dead_letters import decoded
from pipeline.streaming.storage import ClickHouseHandle

BATCH_SIZE = 50_000
BATCH_SECONDS = 1.0


def register(app: faust.App, topics, clickhouse: ClickHouseHandle) -> None:

    async def store(batch, contract: AvroContract, from_record, insert) -> None:
        pending: list = []
        for (topic, partition), events in _by_partition(batch).items():
            rows = []
            for event in events:
                row = await decoded(topics.dead_letters, event, contract, partial(from_record, message=event.message), pending)
                if row is not None:
                    rows.append(row)
            token = f"{topic}:{partition}:{events[0].message.offset}-{events[-1].message.offset}"
            await clickhouse.write(partial(insert, rows=rows, dedup_token=token), token)
        await asyncio.gather(*pending)

    @app.agent(topics.decisions)
    async def store_decisions(stream):
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_SECONDS):
            await store(batch, ENFORCEMENT_DECISION, lambda record, message: records.decision_from_record(record), insert_decisions)

    @app.agent(topics.observations)
    async def store_observations(stream):
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_SECONDS):
            await store(batch, SERVER_OBSERVATION, lambda record, message: records.current_observation_record(record), insert_observations)

    @app.agent(topics.enforcement)
    async def store_enforcement(stream):
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_SECONDS):
            await store(batch, ENFORCEMENT, lambda record, message: (record, message.partition, message.offset), insert_enforcement)


def _by_partition(batch) -> dict[tuple[str, int], list]:
    grouped: dict[tuple[str, int], list] = {}
    for event in batch:
        grouped.setdefault((event.message.topic, event.message.partition), []).append(event)
    return grouped
