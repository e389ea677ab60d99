"""What stops the worker on purpose: a dead-letter limit exceeded (dead_letters.DeadLetterLimit).

The agent's batch is not acked, so the group's offsets stay before the records that tripped the
limit, and the whole worker stops (exit status 1) rather than only the agent: Faust would restart
a crashed agent, which would read on past them.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

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
