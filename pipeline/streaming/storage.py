"""The worker's ClickHouse: one client, opened at start, shared by the sink agents and the web views.

The embedded engine is one folder per process, so writes and reads take turns, in a thread so the
event loop keeps serving Kafka. Reads get a client of their own: a query refused in read-only mode
leaves its session read-only (seen with chdb), which must never reach the writer's session. A failed write is retried with backoff and never
skipped: the batch's events are acked only after it succeeded, so offsets never run ahead of
ClickHouse.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, TypeVar

from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import connect, create_tables

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF_S = 30.0


class ClickHouseHandle:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self._writer: Client | None = None
        self._reader: Client | None = None
        self._turn = asyncio.Lock()
        self._ready = asyncio.Event()

    async def open(self) -> None:
        self._writer = await asyncio.to_thread(connect, self.dsn)
        await asyncio.to_thread(create_tables, self._writer)
        self._reader = await asyncio.to_thread(connect, self.dsn)
        self._ready.set()

    async def read(self, fn: Callable[[Client], T]) -> T:
        await self._ready.wait()
        return await self._run(fn, self._reader)

    async def write(self, fn: Callable[[Client], None], what: str) -> None:
        await self._ready.wait()
        backoff = 0.5
        while True:
            try:
                return await self._run(fn, self._writer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the driver raises many types; every one means "not stored"
                log.error("ClickHouse write of %s failed, retrying in %.1f s: %s", what, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def close(self) -> None:
        for client in (self._reader, self._writer):
            if client is not None:
                await asyncio.to_thread(client.close)

    async def _run(self, fn: Callable[[Client], T], client: Client) -> T:
        async with self._turn:
            return await asyncio.to_thread(fn, client)
