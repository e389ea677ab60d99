"""The worker's ClickHouse: two clients, opened at start, one for the sink agents' writes and one
for the web views' reads.

Each client runs one call at a time, in a thread so the event loop keeps serving Kafka: a chdb
handle and an HTTP session each take one query at a time. Reads and writes do not wait for each
other: the embedded engine, like a server, runs queries of different clients at once (chdb gives
each client a connection of its own to the one engine of the process), so a hung write leaves the
report and /sql answering. A read that finds the reader still busy after READ_WAIT_S (an earlier
read that hangs) fails with ClickHouseBusy rather than queue. Reads have a client of their own
also because a query refused in read-only mode leaves its session read-only (seen with chdb),
which must never reach the writer's session.

A write that fails or takes longer than WRITE_TIMEOUT_S is never skipped: the sink's partitions
are held (paused, so Kafka keeps the backlog rather than the worker's buffers) and the write is
tried again with backoff until ClickHouse takes it; then they are released. A write that timed out
is waited for, never run twice at once: it may yet succeed, and a retry of one that did store is
dropped by its deduplication token. The batch's events are acked only after the write succeeded,
so offsets never run ahead of ClickHouse.

Once the worker stops (`stop`), a write that failed or timed out is given up (WriteAbandoned)
instead of tried again: its batch stays unacked and is read again after a restart.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import connect, create_tables

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
WRITE_TIMEOUT_S = 30.0
READ_WAIT_S = 2.0


class ClickHouseBusy(Exception):
    """A read not started within READ_WAIT_S because the reader is still on an earlier read: try again."""


class WriteAbandoned(Exception):
    """A write given up because the worker stops: its batch is not stored, and must not be acked."""


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
        # (writer, reader) once open, each with its turn: held from a call's start until its thread returns.
        self._clients: tuple[Client, Client] | None = None
        self._writer_turn = asyncio.Lock()
        self._reader_turn = asyncio.Lock()
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()

    async def open(self) -> None:
        writer = await asyncio.to_thread(connect, self.dsn)
        await asyncio.to_thread(create_tables, writer)
        self._clients = (writer, await asyncio.to_thread(connect, self.dsn))
        self._ready.set()

    async def read(self, fn: Callable[[Client], T]) -> T:
        """fn(reader), whatever the writer is doing; ClickHouseBusy when an earlier read holds the
        reader for READ_WAIT_S more."""
        _, reader = await self._opened()
        try:
            await asyncio.wait_for(self._reader_turn.acquire(), READ_WAIT_S)
        except TimeoutError:
            raise ClickHouseBusy(f"ClickHouse is still busy with an earlier read after {READ_WAIT_S:g} s; "
                                 "try again") from None
        return await _in_thread(self._reader_turn, fn, reader)

    async def write(self, fn: Callable[[Client], None], what: str,
                    hold: Callable[[], None] = lambda: None, release: Callable[[], None] = lambda: None) -> None:
        """Store with `fn`, however many tries it takes; `hold` once when the first try failed or
        is slow, `release` once after it was stored. WriteAbandoned instead of another try, or of
        waiting on for a slow one, once `stop` was called."""
        writer, _ = await self._opened()
        backoff, held = FIRST_BACKOFF_S, False
        while True:
            attempt = asyncio.ensure_future(self._write_once(fn, writer))
            done, _ = await asyncio.wait({attempt}, timeout=self.write_timeout)
            if not done:
                log.error("ClickHouse write of %s takes over %g s: holding its partitions", what, self.write_timeout)
                held = held or _hold(hold)
                self._failed(f"no answer after {self.write_timeout:g} s")
                await self._unless_stopping(attempt, what)
            try:
                attempt.result()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the driver raises many types; every one means "not stored"
                log.error("ClickHouse write of %s failed, retrying in %.1f s: %s", what, backoff, exc)
                held = held or _hold(hold)
                self._failed(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                await self._unless_stopping(asyncio.sleep(backoff), what)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if self.health.failing_since is not None:
                log.info("ClickHouse write of %s stored after %d failures", what, self.health.failures)
                self.health.failing_since = None
            if held:
                release()
            return

    def stop(self) -> None:
        """The worker stops: writes that fail or hang are given up rather than tried again."""
        self._stopping.set()

    async def close(self) -> None:
        for client in self._clients or ():
            await asyncio.to_thread(client.close)

    async def _opened(self) -> tuple[Client, Client]:
        while self._clients is None:
            await self._ready.wait()
        return self._clients

    async def _write_once(self, fn: Callable[[Client], None], writer: Client) -> None:
        await self._writer_turn.acquire()
        await _in_thread(self._writer_turn, fn, writer)

    async def _unless_stopping(self, waited: Awaitable, what: str) -> None:
        """Wait for `waited`, or give the write up (cancelling `waited`) once the worker stops."""
        waiting = asyncio.ensure_future(waited)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not waiting.done():
            # An attempt still queued for the writer never starts; one in its thread runs to its end,
            # the writer's turn with it.
            waiting.cancel()
            log.warning("ClickHouse write of %s given up: the worker stops; its batch stays unacked", what)
            raise WriteAbandoned(f"ClickHouse write of {what} given up as the worker stops "
                                 f"(last error: {self.health.last_error})")

    def _failed(self, error: str) -> None:
        self.health.failures += 1
        self.health.last_error = error
        if self.health.failing_since is None:
            self.health.failing_since = time.monotonic()


async def _in_thread(turn: asyncio.Lock, fn: Callable[[Client], T], client: Client) -> T:
    """fn(client) in a thread; `turn`, acquired by the caller, is released when the thread returns,
    also when the caller stopped waiting (cancelled): the client must not get a second call meanwhile."""
    call = asyncio.ensure_future(asyncio.to_thread(fn, client))
    call.add_done_callback(lambda finished: _released(turn, finished))
    return await asyncio.shield(call)


def _released(turn: asyncio.Lock, call: asyncio.Future) -> None:
    turn.release()
    if not call.cancelled():
        call.exception()  # retrieved here: a cancelled caller no longer awaits it


def _hold(hold: Callable[[], None]) -> bool:
    hold()
    return True
