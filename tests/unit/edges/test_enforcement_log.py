"""The MTA's enforcement log: failed sends are tried again and counted, the thread goes on."""
import threading
import time
from datetime import UTC, datetime

import pytest
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)
from kafka.future import Future

from pipeline.contracts.avro import ENFORCEMENT
from pipeline.domain.policy import Decision
from pipeline.edges import mta
from pipeline.edges.send_backlog import Backlog, sendable_again
from pipeline.settings import Settings

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


class _Producer:
    """A KafkaProducer stand-in. `fates` lists per client address what its sends do in turn: an
    exception raised by send ("raise", error), or reported later through the future ("later",
    error); once the list is used up, sends succeed. `held` leaves every future unanswered."""

    def __init__(self, fates=None, held=False):
        self.fates = {address: list(outcomes) for address, outcomes in (fates or {}).items()}
        self.held = held
        self.sends: list[str] = []
        self.delivered: list[str] = []
        self.unanswered: list[tuple[Future, str]] = []
        self.closed = False

    def send(self, topic, key=None, value=None):
        address = ENFORCEMENT.decode(value)["client_address"]
        self.sends.append(address)
        fate = self.fates.get(address) and self.fates[address].pop(0)
        if fate and fate[0] == "raise":
            raise fate[1]
        future = Future()
        if self.held:
            self.unanswered.append((future, address))
        elif fate:
            # The producer's I/O thread answers a moment later.
            threading.Timer(0.02, future.failure, [fate[1]]).start()
        else:
            self.delivered.append(address)
            future.success(None)
        return future

    def answer(self):
        for future, address in self.unanswered:
            self.delivered.append(address)
            future.success(None)
        self.unanswered.clear()

    def close(self):
        self.closed = True


class AppliedLog(mta.EnforcementLog):
    """The log with `apply(n)`: the record of `blocked`'s block of client address 192.0.2.n."""

    blocked: Decision

    def apply(self, n: int) -> None:
        self(self.blocked, "block", NOW, {"client_address": f"192.0.2.{n}"})


@pytest.fixture
def enforcement_log(monkeypatch, make_decision):
    """An EnforcementLog sending through `producer`, with short pauses; `apply(n)` has it take the
    record of an enforcement on client address 192.0.2.n."""
    monkeypatch.setattr(mta.EnforcementLog, "FIRST_BACKOFF_S", 0.001)
    monkeypatch.setattr(mta.EnforcementLog, "MAX_BACKOFF_S", 0.01)
    started = []

    def make(producer, max_pending=100):
        monkeypatch.setattr(mta.kafka_clients, "KafkaProducer", lambda **config: producer)
        monkeypatch.setattr(mta.EnforcementLog, "MAX_PENDING", max_pending)
        log = AppliedLog(Settings())
        log.blocked = make_decision(1, 3)
        started.append(log)
        return log
    yield make
    for log in started:
        log.stopping.set()


def until(done, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def test_failed_sends_are_sent_again_and_counted_and_the_thread_goes_on(enforcement_log, caplog):
    producer = _Producer({
        "192.0.2.1": [("raise", KafkaTimeoutError("Failed to update metadata after 60.0 secs.")),
                      ("later", KafkaConnectionError("broker gone"))],
        "192.0.2.2": [("later", TopicAuthorizationFailedError())],  # until an operator grants the ACL
    })
    log = enforcement_log(producer)
    for n in (1, 2, 3):
        log.apply(n)
    log.start()
    until(lambda: len(producer.delivered) == 3 and log.pending.unsettled == 0, "every record is delivered")
    assert sorted(producer.delivered) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"], "each once"
    assert producer.sends.count("192.0.2.1") == 3 and producer.sends.count("192.0.2.2") == 2
    assert (log.send_failures, log.dropped) == (3, 0)
    assert log.is_alive()
    # And it sends what comes next.
    log.apply(4)
    until(lambda: "192.0.2.4" in producer.delivered, "a later record is delivered")
    log.close()
    assert not log.is_alive() and producer.closed
    assert "3 send failures" in caplog.text


def test_a_record_that_can_never_be_sent_is_dropped_once_and_blocks_nothing(enforcement_log, caplog):
    producer = _Producer({"192.0.2.1": [("raise", MessageSizeTooLargeError("The message is 2000000 bytes"))],
                          "192.0.2.2": [("later", MessageSizeTooLargeError("refused by the broker"))]})
    log = enforcement_log(producer)
    for n in (1, 2, 3):
        log.apply(n)
    log.start()
    until(lambda: log.pending.unsettled == 0, "every record is settled")
    assert producer.delivered == ["192.0.2.3"]
    assert producer.sends.count("192.0.2.1") == producer.sends.count("192.0.2.2") == 1
    assert (log.dropped, log.send_failures) == (2, 0)
    assert [r.getMessage().split(",")[0] for r in caplog.records if r.levelname == "ERROR"] == [
        "dropped the enforcement record of ex13mbx01.contoso.example at 2026-03-01 10:00:00+00:00"] * 2
    assert log.is_alive()


def test_records_in_flight_and_to_be_sent_again_count_against_the_limit(enforcement_log):
    producer = _Producer({"192.0.2.1": [("raise", KafkaTimeoutError("no metadata"))]}, held=True)
    log = enforcement_log(producer, max_pending=2)
    log.apply(1)
    log.apply(2)
    log.apply(3)  # refused: the limit is reached
    log.start()
    until(lambda: producer.sends == ["192.0.2.1", "192.0.2.1", "192.0.2.2"], "1 is sent again before 2")
    log.apply(4)  # refused: 1 and 2 are in flight
    assert (log.dropped, log.pending.unsettled) == (2, 2)
    producer.answer()
    log.apply(5)
    until(lambda: producer.sends[-1:] == ["192.0.2.5"], "a new record is taken once the others went")
    producer.answer()
    assert producer.delivered == ["192.0.2.1", "192.0.2.2", "192.0.2.5"]
    assert log.pending.unsettled == 0


def test_the_backlog_sends_again_before_what_waits():
    backlog = Backlog(limit=3)
    assert backlog.put({"n": 1}) and backlog.put({"n": 2}) and backlog.put({"n": 3})
    assert not backlog.put({"n": 4}) and backlog.dropped == 1
    first = backlog.get(timeout=0)
    assert backlog.failed(first) == 1 and backlog.failing == 1
    assert backlog.get(timeout=0) == first
    assert backlog.sent() == 1, "the success ends a run of one failure"
    assert (backlog.failing, backlog.send_failures, backlog.unsettled) == (0, 1, 2)
    assert [backlog.get(timeout=0)["n"] for _ in range(2)] == [2, 3]
    assert backlog.get(timeout=0) is None


@pytest.mark.parametrize("failure, again", [
    (KafkaTimeoutError("Failed to update metadata after 60.0 secs."), True),
    (KafkaConnectionError("broker gone"), True),
    (TopicAuthorizationFailedError(), True),  # until an operator grants the ACL
    (MessageSizeTooLargeError("The message is 2000000 bytes"), False),
    (ValueError("a value fastavro cannot write"), False),
])
def test_only_failures_that_are_not_the_records_own_are_sent_again(failure, again):
    assert sendable_again(failure) is again
