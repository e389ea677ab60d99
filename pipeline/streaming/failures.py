"""What stops the worker on purpose: a dead-letter limit exceeded (dead_letters.DeadLetterLimit);
and how a batch that an agent did not finish stays unacked.

The agent's batch is not acked, so the group's offsets stay before the records that tripped the
limit, and the whole worker stops (exit status 1) rather than only the agent: Faust would restart
a crashed agent, which would read on past them.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import faust

from pipeline.streaming.dead_letters import DeadLetterLimitExceeded

log = logging.getLogger(__name__)


@asynccontextmanager
async def stops_worker_on_limit(app: faust.App) -> AsyncIterator[None]:
    try:
        yield
    except DeadLetterLimitExceeded as exc:
        log.critical("stopping the worker: dead-letter limit exceeded: %s", exc)
        await app.crash(exc)


async def batches(stream: faust.Stream, size: int, within: float) -> AsyncIterator[Sequence[faust.EventT]]:
    """`stream.take_events`, except that a batch the agent did not finish is never acked.

    take_events acks a batch however the agent's loop leaves it, by an exception or a cancellation
    too (when the generator is closed), and the worker commits what was acked as it stops: after a
    restart the batch would be skipped, its output or its rows lost. The agent leaving the loop
    closes this generator first: one reference more on each message, never given back, keeps the
    batch unacked."""
    async for events in stream.take_events(size, within=within):
        try:
            yield events
        except GeneratorExit:
            for event in events:
                event.message.incref()
            raise
