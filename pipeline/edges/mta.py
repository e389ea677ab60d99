"""`patchgate mta`: the MTA side. Follows mail.decisions into a local cache and answers Postfix's
policy delegation protocol from it; every throttle or block it applies goes to mail.enforcement
(in report-only mode it accepts, and what it would have applied goes there),
and every message whose Received headers show its server updated (asked with them: Exim's DATA
ACL) goes through, its trace to mail.traces. `patchgate milter` serves the same from the same
parts (serve_decisions) in the milter protocol.

The cache is loaded from disk first, so the server answers at once, also with the broker down;
with no decision for a server it answers DUNNO (fail open) and says so in its log.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from pipeline import kafka_clients, topic_reading
from pipeline.catalog_files import load_catalog
from pipeline.contracts import records, topics
from pipeline.contracts.compacted import Compacted
from pipeline.domain.policy import Decision, in_force
from pipeline.edges import RECONNECT_BACKOFF_MAX_MS, policy
from pipeline.edges.connection_guard import ConnectionGuard, Handler, Reader, make_room
from pipeline.edges.decision_cache import DecisionCache
from pipeline.edges.record_log import EnforcementLog, TraceLog
from pipeline.edges.release import Releaser
from pipeline.settings import Settings

log = logging.getLogger(__name__)
MAX_LINE = 8192
MAX_ATTRIBUTES = 100
SAVE_EVERY_S = 1.0
# How often the follower looks for partitions mail.decisions gained (`patchgate repartition`).
PARTITIONS_CHECK_S = 30.0


@dataclass(frozen=True)
class Verdict:
    """What the decision for a client says now: DUNNO (no decision, or outside its windows), or a
    reply with the kind of enforcement (throttle, block)."""

    decision: Decision | None
    action: str
    kind: str | None
    at: datetime


class PolicyServer:
    """The answers of the MTA side, whatever protocol asks: the decision cache and windows
    (`verdict`), the release of a server by its message's Received headers and the record of what
    is enforced (`settle`)."""

    def __init__(self, cache: DecisionCache, on_enforced: Callable[[Decision, str, datetime, dict], None],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), releaser: Releaser | None = None):
        self.cache, self.on_enforced, self.clock, self.releaser = cache, on_enforced, clock, releaser

    def answer(self, lines: list[str]) -> str:
        try:
            request = policy.parse_request(lines)
        except policy.RequestError as exc:
            log.warning("malformed policy request, answering DUNNO: %s", exc)
            return policy.DUNNO
        return self.decide(request)

    def decide(self, request: dict[str, str]) -> str:
        """The action for a request's client (policy protocol attributes: client_name, helo_name,
        client_address, ...; `received`, the message's Received headers one per line, where the
        MTA asks after them)."""
        received = request.get("received")
        return self.settle(self.verdict(request), request, received.split("\n") if received else [])

    def verdict(self, request: dict[str, str]) -> Verdict:
        names = policy.server_names(request)
        decision = self.cache.lookup(names)
        now = self.clock()
        if decision is None:
            log.info("no decision for %s: DUNNO", ", ".join(names) or "an unnamed client")
            return Verdict(None, policy.DUNNO, None, now)
        # The stage the schedule gives for now, not only the one decided at the server's last message.
        applied = in_force(decision, now)
        action, kind = policy.action_for(applied, now)
        return Verdict(applied, action, kind, now)

    def settle(self, verdict: Verdict, request: dict[str, str], received: list[str]) -> str:
        """The answer to give: DUNNO where the message's own Received headers (newest first) show
        its server updated (its trace then goes to the pipeline), else the verdict's action,
        recorded when it throttles or blocks. In report-only mode DUNNO, and what the action would
        have been is recorded."""
        if verdict.kind is None or verdict.decision is None:
            return verdict.action
        if self.releaser is not None and received and self.releaser.released(verdict.decision, received, request,
                                                                             verdict.at):
            return policy.DUNNO
        if verdict.decision.report_only:
            self.on_enforced(verdict.decision, policy.would(verdict.kind), verdict.at, request)
            return policy.DUNNO
        self.on_enforced(verdict.decision, verdict.kind, verdict.at, request)
        return verdict.action

    async def handle(self, reader: Reader, writer: asyncio.StreamWriter) -> None:
        """One client connection: requests one after another until the client closes it."""
        lines: list[str] = []
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                if len(raw) > MAX_LINE or len(lines) > MAX_ATTRIBUTES:
                    log.warning("policy request too large, closing the connection")
                    return
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line:
                    lines.append(line)
                    continue
                writer.write(f"action={self.answer(lines)}\n\n".encode())
                lines = []
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            writer.close()


class DecisionFollower(threading.Thread):
    """Reads mail.decisions from the start and keeps following it into the cache, and the partitions
    it gains (`patchgate repartition`) from their start, without a restart. After an error (the
    broker away) it reads the topic from the start again, the cache answering meanwhile."""

    def __init__(self, settings: Settings, cache: DecisionCache):
        super().__init__(name="decision-follower", daemon=True)
        self.settings, self.cache = settings, cache
        self.caught_up = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        name = self.settings.topic(topics.DECISIONS)
        while not self.stopping.is_set():
            try:
                self._follow(name)
            except Exception as exc:  # the broker may be down: keep serving from the cache, retry
                log.warning("cannot follow %s (%s); serving the cached decisions", name, exc)
                self.stopping.wait(5)

    def _follow(self, name: str) -> None:
        # A short reconnect backoff: back from an outage, the broker is followed again within seconds.
        # Metadata as fresh as the partitions check (the default is 5 minutes old at most).
        consumer = kafka_clients.consumer(self.settings, reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                                 metadata_max_age_ms=int(PARTITIONS_CHECK_S * 1000))
        try:
            # Following nothing would last forever: a topic not known yet is an error, tried again later.
            partitions = topic_reading.from_start(consumer, name)
            reading = records.latest_decisions()
            for message in topic_reading.records_to_end(consumer, partitions, None, stop=self.stopping.is_set):
                topic_reading.folded(reading.add, message)
            if not self.stopping.is_set():
                self._keep_up(consumer, name, partitions, reading)
        finally:
            consumer.close()

    def _keep_up(self, consumer: KafkaConsumer, name: str, partitions: list[TopicPartition],
                 reading: Compacted[Decision]) -> None:
        """Replace the cache with `reading`, what the topic held from its start up to where the
        consumer stands (contracts.compacted: deleted servers left out); from there on, apply each
        record to the cache as it comes, until stopped."""
        self.cache.replace(reading)
        self.cache.save()
        self.caught_up.set()
        log.info("decision cache caught up: %d servers", len(self.cache))
        changed, last_save, checked = False, time.monotonic(), time.monotonic()
        while not self.stopping.is_set():
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    changed |= topic_reading.folded(self.cache.apply_record, message)
            if time.monotonic() - checked >= PARTITIONS_CHECK_S:
                partitions = with_new_partitions(consumer, name, partitions)
                checked = time.monotonic()
            if changed and time.monotonic() - last_save >= SAVE_EVERY_S:
                self.cache.save()
                changed, last_save = False, time.monotonic()
        if changed:
            self.cache.save()


def with_new_partitions(consumer: KafkaConsumer, name: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """`partitions` of topic `name` and those it gained since, assigned; the new ones from their start."""
    new = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())
           if TopicPartition(name, p) not in partitions]
    if not new:
        return partitions
    consumer.assign(partitions + new)
    consumer.seek_to_beginning(*new)
    log.info("following %d new partitions of %s (now %d)", len(new), name, len(partitions) + len(new))
    return partitions + new


def run_mta(settings: Settings, host: str, port: int, cache_path: Path) -> None:
    serve_decisions(settings, cache_path, host, port, lambda server: server.handle, "policy service",
                    stream_limit=MAX_LINE * 2)


def serve_decisions(settings: Settings, cache_path: Path, host: str, port: int,
                    handler: Callable[[PolicyServer], Handler], name: str, stream_limit: int = 2 ** 16) -> None:
    """Serve MTAs on host:port with `handler`'s protocol from the decisions on mail.decisions
    (followed into the cache at `cache_path`), recording what they apply on mail.enforcement,
    until SIGINT or SIGTERM. The connections are held within settings.mta (connection_guard)."""
    guard = ConnectionGuard(settings.mta, name)
    make_room(settings.mta)
    cache = DecisionCache(cache_path)
    log.info("loaded %d cached decisions from %s", len(cache), cache_path)
    follower = DecisionFollower(settings, cache)
    follower.start()
    enforcement = EnforcementLog(settings)
    enforcement.start()
    traces = TraceLog(settings)
    traces.start()
    releaser = Releaser(settings.policy, load_catalog(settings.catalog_file), traces, name)
    connection = guard.guarded(handler(PolicyServer(cache, enforcement, releaser=releaser)))

    async def serve() -> None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        listener = await asyncio.start_server(connection, host, port, limit=stream_limit)
        log.info("%s on %s:%d (%s)", name, host, port, guard.describe())
        logging_counts = asyncio.create_task(guard.log_counts())
        await stop.wait()
        logging_counts.cancel()
        guard.log_remaining()
        # Not wait_closed(): MTAs keep their connections open; asyncio.run cancels their handlers.
        listener.close()

    try:
        asyncio.run(serve())
    finally:
        follower.stopping.set()
        traces.stopping.set()  # winds down beside the enforcement log
        follower.join(10)
        enforcement.close()
        traces.close()
        cache.save()
