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

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import faust

from pipeline.streaming.dead_letters import DeadLetterLimitExceeded
from pipeline.streaming.storage import WriteAbandoned

log = logging.getLogger(__name__)


# Faust's shutdown waits for the streams' events to be acked, and the batch the agent failed on
# never is: after this long the process ends without it. Nothing past that batch was committed, so
# this costs what a kill -9 costs (the integration tests and bench/faults.py kill workers so).
STOP_GRACE_S = 20.0


# The apps of this process (`patchgate run` has two): a failure in one stops them all.
_apps: weakref.WeakSet[faust.App] = weakref.WeakSet()


@asynccontextmanager
async def stops_worker_on_failure(app: faust.App, agent: str) -> AsyncIterator[None]:
    _apps.add(app)
    try:
        yield
    except DeadLetterLimitExceeded as exc:
        log.critical("stopping the worker: dead-letter limit exceeded: %s", exc)
        await _crash(app, exc)
    except WriteAbandoned as exc:
        # The worker was stopping anyway: the batch is read again at the next start.
        log.warning("stopping with a batch not stored in ClickHouse: %s", exc)
        await _crash(app, exc)
    except Exception as exc:  # whatever it is, going on would skip the batch
        log.critical("stopping the worker: the %s agent failed: %s: %s", agent, type(exc).__name__, exc,
                     exc_info=exc)
        await _crash(app, exc)


async def _crash(app: faust.App, exc: BaseException) -> None:
    for each in _apps:
        _commit_nothing_more(each)
    asyncio.get_running_loop().call_later(STOP_GRACE_S, _exit_now)
    await app.crash(exc)


def _commit_nothing_more(app: faust.App) -> None:
    """From a failure on, the process commits no offset. A stream that an agent left keeps being
    read in the background (Faust's take_events consumes passively), and with the agent gone each
    record it reads is acked unprocessed: committed as the worker stops, those records would be
    skipped after the restart. Offsets of batches done since the last commit are read again."""
    async def refused(offsets: object) -> bool:
        return False
    consumer: Any = app.consumer  # Faust's consumer class, whose _commit sends the offsets
    consumer._commit = refused


def _exit_now() -> None:
    log.critical("the worker did not stop within %.0f s of the failure: exiting now", STOP_GRACE_S)
    logging.shutdown()
    os._exit(1)


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
