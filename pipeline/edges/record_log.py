"""What the MTA side tells the pipeline, sent from threads of their own so that an answer to the
MTA never waits for the broker: the throttles and blocks it applied (mail.enforcement) and the
messages that released their servers (mail.traces, pipeline.domain.release).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from kafka import KafkaProducer

from pipeline import kafka_clients
from pipeline.contracts import records, topics
from pipeline.contracts.avro import ENFORCEMENT, MESSAGE_TRACE, AvroContract
from pipeline.domain.events import MessageTrace
from pipeline.domain.policy import Decision
from pipeline.edges import RECONNECT_BACKOFF_MAX_MS
from pipeline.edges.send_backlog import Backlog, sendable_again
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class RecordLog(threading.Thread):
    """Sends records to one topic from a thread of its own; with the broker away it keeps up to
    MAX_PENDING records.

    A send that fails, at once or later through its future (the broker away, a timeout, access
    refused), is counted in `send_failures` and the record sent again before newer ones, after a
    pause that doubles from FIRST_BACKOFF_S to MAX_BACKOFF_S while sends keep failing. A record
    that can never be sent (too large, refused as invalid) is dropped and logged. The thread never
    ends on a failed send."""

    MAX_PENDING = 100_000
    FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0

    def __init__(self, settings: Settings, topic: str, contract: AvroContract, what: str):
        super().__init__(name=f"{what}-log", daemon=True)
        self.settings, self.contract, self.what = settings, contract, what
        self.topic = settings.topic(topic)
        self.pending = Backlog(self.MAX_PENDING)
        self.stopping = threading.Event()

    @property
    def send_failures(self) -> int:
        return self.pending.send_failures

    @property
    def dropped(self) -> int:
        return self.pending.dropped

    def key(self, record: dict) -> bytes:
        raise NotImplementedError

    def describe(self, record: dict) -> str:
        """The record in a log line."""
        raise NotImplementedError

    def run(self) -> None:
        producer = None
        while not (self.stopping.is_set() and self.pending.empty()):
            if producer is None:
                if self.pending.empty():
                    # Connected only once there is something to send: a log that never sends (no
                    # server released) never waits for a broker, not even when it stops.
                    self.stopping.wait(0.2)
                    continue
                try:
                    producer = kafka_clients.producer(self.settings, linger_ms=50, acks=1,
                                                      reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)
                except Exception as exc:  # no broker: enforcement goes on, the report catches up later
                    log.warning("cannot reach the broker for %s (%s); %d records waiting", self.topic, exc,
                                self.pending.qsize())
                    self.stopping.wait(5)
                    continue
            self._send_next(producer)
        if producer is not None:
            producer.close()

    def _send_next(self, producer: KafkaProducer) -> None:
        if self.pending.failing:
            time.sleep(min(self.MAX_BACKOFF_S, self.FIRST_BACKOFF_S * 2 ** min(self.pending.failing - 1, 16)))
        record = self.pending.get(timeout=0.5)
        if record is None:
            return
        try:
            future = producer.send(self.topic, key=self.key(record), value=self.contract.encode(record))
        except Exception as exc:  # at once: no metadata in time, too large, a value that does not encode
            self._failed(record, exc)
            return
        # Called on the producer's thread once the broker answered, or at once if it failed already.
        future.add_callback(self._sent)
        future.add_errback(self._failed, record)

    def _sent(self, metadata: object) -> None:
        ended = self.pending.sent()
        if ended:
            log.info("sending to %s again after %d failed sends (%d since the start)", self.topic, ended,
                     self.pending.send_failures)

    def _failed(self, record: dict, exc: BaseException) -> None:
        if not sendable_again(exc):
            self.pending.drop()
            log.error("dropped %s, which %s cannot take: %r", self.describe(record), self.topic, exc)
        elif self.pending.failed(record) == 1:
            log.warning("a send to %s failed (%r): sending again, pausing up to %g s while sends fail; "
                        "%d send failures since the start", self.topic, exc, self.MAX_BACKOFF_S,
                        self.pending.send_failures)

    def close(self) -> None:
        """Send what is pending if the broker answers within a few seconds, else give up on it."""
        self.stopping.set()
        self.join(10)
        lost = self.dropped + self.pending.unsettled
        if lost or self.send_failures:
            log.warning("%d %s records could not be sent to %s (%d send failures)", lost, self.what, self.topic,
                        self.send_failures)


class EnforcementLog(RecordLog):
    """What the policy server applied, to mail.enforcement: the worker counts it into the report."""

    def __init__(self, settings: Settings):
        super().__init__(settings, topics.ENFORCEMENT, ENFORCEMENT, "enforcement")

    def __call__(self, decision: Decision, kind: str, now: datetime, request: dict) -> None:
        record = {
            "server_id": decision.server_id, "hostname": decision.hostname, "org": decision.org, "at": now,
            "action": kind, "stage": decision.stage, "decision_version": decision.version,
            "client_address": request.get("client_address"), "helo_name": request.get("helo_name"),
        }
        self.pending.put(record)

    def key(self, record: dict) -> bytes:
        return record["server_id"].encode()

    def describe(self, record: dict) -> str:
        return f"the enforcement record of {record['server_id']} at {record['at']}"


class TraceLog(RecordLog):
    """The messages that released their servers, to mail.traces, which the worker reads as it reads
    any producer's traces."""

    def __init__(self, settings: Settings):
        super().__init__(settings, topics.TRACES, MESSAGE_TRACE, "trace")

    def __call__(self, trace: MessageTrace) -> None:
        self.pending.put(records.trace_record(trace))

    def key(self, record: dict) -> bytes:
        return (record["client_hostname"] or record["client_ip"] or "").encode()

    def describe(self, record: dict) -> str:
        client = record["client_hostname"] or record["client_ip"]
        return f"the trace of a message from {client} at {record['event_time']}"
