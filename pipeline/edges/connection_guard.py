"""What `patchgate mta` and `patchgate milter` (serve_decisions) let their clients hold: each open
connection holds a file descriptor, and once the process has none left no MTA can connect; each then
falls back to its default action after its timeout, and enforcement stops without a word.

- A connection from outside mta.client_networks (when set) is closed at once.
- Past mta.max_connections open connections a new one is closed at once. Refused rather than left
  waiting in the accept backlog: the MTA's fallback then comes at once, not after its own timeout
  (Postfix's policy client waits up to smtpd_policy_service_timeout, 100 s by default, per try),
  and the connections already open, which MTAs keep and reuse, go on being answered.
- A connection that sends no request line (milter: packet) for mta.idle_timeout_seconds is closed.
  MTAs reconnect when they need to, and close their own idle connections as soon (Postfix: after
  smtpd_policy_service_max_idle, 300 s).

Each kind of refusal or close is logged with its count, at most once every LOG_EVERY_S.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pipeline.settings import MtaSettings

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0
# Descriptors the process needs beside its clients': the listener, the Kafka clients' sockets (three
# clients, each to several brokers), the cache file being saved, the log.
SPARE_DESCRIPTORS = 200


class Reader(Protocol):
    """The reads a protocol handler makes of its connection."""

    async def readline(self) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...


Handler = Callable[[Reader, asyncio.StreamWriter], Awaitable[None]]
Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class IdleTimeout(Exception):
    """The client sent no line or packet within the idle timeout."""


class IdleBoundReader:
    """A connection's reader whose reads end in IdleTimeout when they wait longer than `idle_s`."""

    def __init__(self, reader: asyncio.StreamReader, idle_s: float):
        self.reader, self.idle_s = reader, idle_s

    async def readline(self) -> bytes:
        return await self._within(self.reader.readline())

    async def readexactly(self, n: int) -> bytes:
        return await self._within(self.reader.readexactly(n))

    async def _within(self, read: Awaitable[bytes]) -> bytes:
        try:
            async with asyncio.timeout(self.idle_s):
                return await read
        except TimeoutError:
            raise IdleTimeout from None


class Tally:
    """Events of one kind, logged with their count since the last line, at most once every `every_s`."""

    def __init__(self, level: int, describe: Callable[[int, str], str], every_s: float,
                 clock: Callable[[], float]):
        self.level, self.describe, self.every_s, self.clock = level, describe, every_s, clock
        self.count, self.last = 0, ""
        self.logged_at = -math.inf

    def add(self, detail: str = "") -> None:
        self.count, self.last = self.count + 1, detail
        self.log_due()

    def log_due(self) -> None:
        if self.clock() - self.logged_at >= self.every_s:
            self.log_now()

    def log_now(self) -> None:
        if self.count:
            log.log(self.level, self.describe(self.count, self.last))
            self.count, self.logged_at = 0, self.clock()


class ConnectionGuard:
    """Admits the connections of one server (`name`, as its log lines say) within `limits`, and
    closes them when idle; `open` is how many it holds."""

    def __init__(self, limits: MtaSettings, name: str, log_every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.limits, self.log_every_s = limits, log_every_s
        self.open = 0

        def outsiders(count: int, last: str) -> str:
            return f"{name}: refused {count} connections from outside mta.client_networks (the last from {last})"

        def over_limit(count: int, _: str) -> str:
            return f"{name}: refused {count} connections: {limits.max_connections} open, the mta.max_connections limit"

        def idle(count: int, _: str) -> str:
            return f"{name}: closed {count} connections idle for {limits.idle_timeout_seconds:g} s"
        self.outsiders = Tally(logging.WARNING, outsiders, log_every_s, clock)
        self.over_limit = Tally(logging.WARNING, over_limit, log_every_s, clock)
        self.idle = Tally(logging.INFO, idle, log_every_s, clock)

    def describe(self) -> str:
        networks = ", ".join(map(str, self.limits.client_networks or ())) or "any network"
        return (f"at most {self.limits.max_connections} connections, from {networks}, "
                f"closed when idle for {self.limits.idle_timeout_seconds:g} s")

    def guarded(self, handler: Handler) -> Connection:
        """`handler` for the connections admitted, with reads bound by the idle timeout."""

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not self._admitted(writer):
                writer.close()
                return
            self.open += 1
            try:
                await handler(IdleBoundReader(reader, self.limits.idle_timeout_seconds), writer)
            except IdleTimeout:
                self.idle.add()
            finally:
                self.open -= 1
                writer.close()
        return connection

    def _admitted(self, writer: asyncio.StreamWriter) -> bool:
        if self.limits.client_networks is not None:
            address = peer_address(writer)
            if address is None or not any(address in network for network in self.limits.client_networks):
                self.outsiders.add(str(address or "an unknown address"))
                return False
        if self.open >= self.limits.max_connections:
            self.over_limit.add()
            return False
        return True

    async def log_counts(self) -> None:
        """Log the counts that waited for their turn, until cancelled."""
        while True:
            await asyncio.sleep(min(1.0, self.log_every_s))
            for tally in self._tallies:
                tally.log_due()

    def log_remaining(self) -> None:
        """Log the counts still waiting (at the end: none goes unsaid)."""
        for tally in self._tallies:
            tally.log_now()

    @property
    def _tallies(self) -> tuple[Tally, ...]:
        return self.outsiders, self.over_limit, self.idle


def peer_address(writer: asyncio.StreamWriter) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address, or None where the socket knows none. (asyncio's IPv6 listeners take no
    IPv4 clients, so none comes as ::ffff:a.b.c.d.)"""
    peer = writer.get_extra_info("peername")
    return ipaddress.ip_address(peer[0]) if isinstance(peer, tuple) else None


def make_room(limits: MtaSettings) -> None:
    """Raise the process's soft limit on open files to fit `limits.max_connections` and the spare
    descriptors, within the hard limit; below that, say so: new connections would fail before the
    limit refuses them, and MTAs wait out their timeout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.max_connections + SPARE_DESCRIPTORS
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < wanted:
        log.warning("only %d open files allowed (the hard limit), %d wanted for mta.max_connections = %d: raise "
                    "the limit (ulimit -n, systemd's LimitNOFILE) or lower the setting",
                    raised, wanted, limits.max_connections)
