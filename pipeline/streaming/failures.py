"""What stops the worker: a dead-letter limit exceeded (dead_letters.DeadLetterLimit), or any
other failure of an agent (a full disk under the tables, a bug); and how the batch the agent was
on stays unacked.

The whole worker stops (exit status 1, one critical line saying why) rather than only the agent:
Faust would restart a crashed agent, which would read on past the batch it failed on, leaving
that batch unprocessed and its partition's commits stuck behind it until some restart. Stopped,
the group's offsets stay before the batch, and a restart (after the fix, or once space is freed)
reads it again.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import faust

from pipeline.streaming.dead_letters import DeadLetterLimitExceeded

log = logging.getLogger(__name__)


@asynccontextmanager
async def stops_worker_on_failure(app: faust.App, agent: str) -> AsyncIterator[None]:
    try:
        yield
    except DeadLetterLimitExceeded as exc:
        log.critical("stopping the worker: dead-letter limit exceeded: %s", exc)
        await app.crash(exc)
    except Exception as exc:  # whatever it is, going on would skip the batch
        log.critical("stopping the worker: the %s agent failed: %s: %s", agent, type(exc).__name__, exc,
                     exc_info=exc)
        await app.crash(exc)


async def batches(stream: faust.Stream, size: int, within: float) -> AsyncIterator[Sequence[faust.EventT]]:
    """`stream.take_events`, except that a batch the agent did not finish is never acked.

    take_events acks a batch however the agent's loop leaves it, by an exception or a cancellation
    too (when it is closed, in whatever order the generators are finalized), and the worker commits
    what was acked as it stops: after a restart the batch would be skipped, its output or its rows
    lost. So each message holds one reference more while the agent works on the batch, given back
    only once the agent asks for the next batch."""
    async for events in stream.take_events(size, within=within):
        for event in events:
            event.message.incref()
        yield events
        for event in events:
            event.message.decref()
