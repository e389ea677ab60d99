"""The worker's ClickHouse: one client, opened at start, shared by the sink agents and the web views.

The embedded engine is one folder per process, so writes and reads take turns, in a thread so the
event loop keeps serving Kafka. Reads get a client of their own: a query refused in read-only mode
leaves its session read-only (seen with chdb), which must never reach the writer's session.

A write that fails or takes longer than WRITE_TIMEOUT_S is never skipped: the sink's partitions
are held (paused, so Kafka keeps the backlog rather than the worker's buffers) and the write is
tried again with backoff until ClickHouse takes it; then they are released. A write that timed out
is waited for, never run twice at once: it may yet succeed, and a retry of one that did store is
dropped by its deduplication token. The batch's events are acked only after the write succeeded,
so offsets never run ahead of ClickHouse.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import connect, create_tables

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
WRITE_TIMEOUT_S = 30.0


@dataclass
class WriteHealth:
    """What /health shows of the writes: failing since when (monotonic), how often, and why."""

    failing_since: float | None = None
    failures: int = 0
    last_error: str | None = None
    # "topic/partition" of the partitions held until the failing write is stored.
    paused: set[str] = field(default_factory=set)

    def as_json(self) -> dict:
        failing_for = None if self.failing_since is None else round(time.monotonic() - self.failing_since, 1)
        return {"failing_for_s": failing_for, "failures": self.failures, "last_error": self.last_error}


class ClickHouseHandle:
    def __init__(self, dsn: str, write_timeout: float = WRITE_TIMEOUT_S):
        self.dsn = dsn
        self.write_timeout = write_timeout
        self.health = WriteHealth()
        # (writer, reader) once open.
        self._clients: tuple[Client, Client] | None = None
        self._turn = asyncio.Lock()
        self._ready = asyncio.Event()

    async def open(self) -> None:
        writer = await asyncio.to_thread(connect, self.dsn)
        await asyncio.to_thread(create_tables, writer)
        self._clients = (writer, await asyncio.to_thread(connect, self.dsn))
        self._ready.set()

    async def read(self, fn: Callable[[Client], T]) -> T:
        _, reader = await self._opened()
        return await self._run(fn, reader)

    async def write(self, fn: Callable[[Client], None], what: str,
                    hold: Callable[[], None] = lambda: None, release: Callable[[], None] = lambda: None) -> None:
        """Store with `fn`, however many tries it takes; `hold` once when the first try failed or
        is slow, `release` once after it was stored."""
        writer, _ = await self._opened()
        backoff, held = FIRST_BACKOFF_S, False
        while True:
            attempt = asyncio.ensure_future(self._run(fn, writer))
            done, _ = await asyncio.wait({attempt}, timeout=self.write_timeout)
            if not done:
                log.error("ClickHouse write of %s takes over %g s: holding its partitions", what, self.write_timeout)
                held = held or _hold(hold)
                self._failed(f"no answer after {self.write_timeout:g} s")
                done, _ = await asyncio.wait({attempt})
            try:
                attempt.result()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the driver raises many types; every one means "not stored"
                log.error("ClickHouse write of %s failed, retrying in %.1f s: %s", what, backoff, exc)
                held = held or _hold(hold)
                self._failed(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if self.health.failing_since is not None:
                log.info("ClickHouse write of %s stored after %d failures", what, self.health.failures)
                self.health.failing_since = None
            if held:
                release()
            return

    async def close(self) -> None:
        for client in self._clients or ():
            await asyncio.to_thread(client.close)

    async def _opened(self) -> tuple[Client, Client]:
        while self._clients is None:
            await self._ready.wait()
        return self._clients

    def _failed(self, error: str) -> None:
        self.health.failures += 1
        self.health.last_error = error
        if self.health.failing_since is None:
            self.health.failing_since = time.monotonic()

    async def _run(self, fn: Callable[[Client], T], client: Client) -> T:
        async with self._turn:
            return await asyncio.to_thread(fn, client)


def _hold(hold: Callable[[], None]) -> bool:
    hold()
    return True
