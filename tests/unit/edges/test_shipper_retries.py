"""The shipper when the broker does not take lines: what it sends again, from where, and when it
gives up. The producer is a stand-in whose broker answers as each test says."""
import zlib

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError

from pipeline.contracts import packing
from pipeline.edges import shipper
from pipeline.edges.shipper import (
    Checkpoint,
    Position,
    Sent,
    backoff_seconds,
    retriable,
    settle,
    ship,
    written_prefix,
)
from pipeline.settings import Settings


def test_settle_keeps_each_source_in_order_and_leaves_unconfirmed_its_records_from_the_first_not_taken():
    a1, a2, a3 = Position(1, 10, 1), Position(1, 20, 2), Position(1, 30, 3)
    b1 = Position(2, 5, 1)
    lost = NotLeaderForPartitionError()
    unconfirmed = [
        Sent("a", 1, a1, a2, failure=lost),
        # Taken, but after a record of its source that was not: unconfirmed too, to keep the order.
        Sent("a", 1, a2, a3),
        Sent("a", 0, a3, Position(1, 30, 3, done=True)),
    ]
    settled = settle([Sent("a", 1, Position(1), a1), Sent("b", 1, Position(2), b1), *unconfirmed])
    assert settled.reached == {"a": a1, "b": b1}
    assert settled.unconfirmed == {"a": unconfirmed}
    assert (settled.lines, settled.failures) == (2, [lost])


def test_a_source_whose_first_record_was_not_taken_has_nothing_reached():
    record = Sent("a", 3, Position(7, 40, 4), Position(7, 90, 7), failure=KafkaTimeoutError())
    settled = settle([record])
    assert (settled.reached, settled.unconfirmed, settled.lines) == ({}, {"a": [record]}, 0)


def test_the_records_found_on_the_topic_count_up_to_the_first_missing_one():
    first, second, third = (Sent("a", 1, Position(1, n), Position(1, n + 1), mark=(n, n, 7)) for n in (0, 1, 2))
    done = Sent("a", 0, Position(1, 3), Position(1, 3, done=True))
    assert written_prefix([first, second, third, done], {(0, 0, 7), (1, 1, 7), (2, 2, 7)}) == [
        first, second, third, done]
    # The third was written, the second not: the second and third are sent again, in order.
    assert written_prefix([first, second, third], {(0, 0, 7), (2, 2, 7)}) == [first]
    assert written_prefix([first], {(0, 0, 8)}) == []


def test_only_errors_kafka_marks_retriable_are_retried():
    assert retriable(NotLeaderForPartitionError()) and retriable(KafkaTimeoutError())
    assert not retriable(MessageSizeTooLargeError()) and not retriable(ValueError("no"))


def test_the_pause_between_tries_doubles_up_to_its_maximum():
    assert [backoff_seconds(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


class _Future:
    def __init__(self, failure):
        self.failure, self.errbacks = failure, []

    def add_errback(self, callback):
        self.errbacks.append(callback)


class _Broker:
    """A KafkaProducer stand-in. `answers` says, send by send, what happens to a record: None, the
    broker takes it; an exception, the producer reports it failed at the next flush; ("raise", e),
    send itself raises e; ("written", e), the broker takes it and the producer reports e all the
    same (the answer was lost). Sends past the answers are taken. `taken` keeps (value, first line)
    of what the broker took, in order; `read_back` answers for the topic as the shipper's does."""

    def __init__(self, answers):
        self.answers, self.taken, self.waiting, self.producers = list(answers), [], [], 0
        self.marks: dict[str, set] = {}
        self.read_backs = 0
        self.closed = 0

    def __call__(self, **settings):
        self.producers += 1
        return self

    def send(self, topic, key, value, headers, timestamp_ms):
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, tuple) and answer[0] == "raise":
            raise answer[1]
        written, failure = (True, answer[1]) if isinstance(answer, tuple) else (answer is None, answer)
        future = _Future(failure)
        position = packing.packed_position(headers)
        self.waiting.append((future, written, key.decode(), (*position, zlib.crc32(value)), (value, position[0])))
        return future

    def flush(self):
        for future, written, source, mark, record in self.waiting:
            if written:
                self.taken.append(record)
                self.marks.setdefault(source, set()).add(mark)
            for callback in future.errbacks if future.failure is not None else ():
                callback(future.failure)
        self.waiting.clear()

    def read_back(self, settings, topic, since_ms, sources):
        self.read_backs += 1
        return {source: set(self.marks.get(source, ())) for source in sources}

    def close(self, timeout=None):
        self.closed += 1


@pytest.fixture
def broker(monkeypatch):
    """broker(answers) -> the _Broker the shipper sends to; one line a record; no pauses."""
    monkeypatch.setattr(packing, "MAX_RECORD_BYTES", 2)
    monkeypatch.setattr(shipper, "BACKOFF_FIRST_S", 0)

    def make(answers):
        stand_in = _Broker(answers)
        monkeypatch.setattr(shipper.kafka_clients, "KafkaProducer", stand_in)
        monkeypatch.setattr(shipper, "read_back", stand_in.read_back)
        return stand_in
    return make


def _log(tmp_path, lines=5):
    log = tmp_path / "mail.log"
    log.write_bytes(b"".join(b"l%d\n" % n for n in range(1, lines + 1)))
    return log


def test_lines_the_broker_did_not_take_are_sent_again_once_and_in_order(tmp_path, broker, capsys):
    log = _log(tmp_path)
    # Records 2 to 5 fail (no leader yet), then record 2 again on the second try (timed out).
    no_leader, timed_out = NotLeaderForPartitionError(), KafkaTimeoutError()
    stand_in = broker([None, *[no_leader] * 4, timed_out])
    assert ship(Settings(), [str(log)], checkpoint=tmp_path / "cp.json") == 5
    assert stand_in.taken == [(b"l%d\n" % n, n) for n in range(1, 6)]
    assert Checkpoint(tmp_path / "cp.json").positions[str(log.resolve())] == Position(log.stat().st_ino, 15, 5)
    # An idempotent producer whose batch failed never sends again: each try after a failure has its own.
    assert (stand_in.producers, stand_in.closed) == (3, 3)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 2 and "did not take every line" in said[0] and "NotLeaderForPartitionError" in said[0]
    assert said[1].startswith("the broker takes lines again") and "2 tries" in said[1]


def test_after_an_outage_one_record_goes_first_so_that_no_later_one_is_taken_twice(tmp_path, broker, capsys):
    log = _log(tmp_path)
    timed_out = KafkaTimeoutError()
    # Records 2 to 5 time out; then record 2 times out once more (the broker still coming up)
    # where record 3 would already get through; then everything is taken.
    stand_in = broker([None, *[timed_out] * 4, timed_out, None, None])
    assert ship(Settings(), [str(log)], checkpoint=tmp_path / "cp.json") == 5
    assert stand_in.taken == [(b"l%d\n" % n, n) for n in range(1, 6)]
    assert "2 tries" in capsys.readouterr().err


def test_records_written_though_reported_failed_are_read_back_not_sent_twice(tmp_path, broker):
    log = _log(tmp_path)
    timed_out = KafkaTimeoutError()
    # Record 2 is written but its answer is lost as the broker stops; 3 to 5 fail while it is down.
    stand_in = broker([None, ("written", timed_out), *[timed_out] * 3])
    assert ship(Settings(), [str(log)], checkpoint=tmp_path / "cp.json") == 5
    assert stand_in.taken == [(b"l%d\n" % n, n) for n in range(1, 6)]
    assert stand_in.read_backs == 1


def test_a_send_that_raises_a_retriable_error_is_sent_again(tmp_path, broker):
    log = _log(tmp_path, lines=3)
    stand_in = broker([None, ("raise", KafkaTimeoutError("no metadata"))])
    assert ship(Settings(), [str(log)]) == 3
    assert [line for _, line in stand_in.taken] == [1, 2, 3]


def test_an_error_not_to_retry_stops_the_shipper_keeping_what_the_broker_took(tmp_path, broker):
    log = _log(tmp_path)
    stand_in = broker([None, None, MessageSizeTooLargeError()])
    with pytest.raises(RuntimeError, match="did not take every line: MessageSizeTooLargeError"):
        ship(Settings(), [str(log)], checkpoint=tmp_path / "cp.json")
    assert [line for _, line in stand_in.taken] == [1, 2, 4, 5]
    assert Checkpoint(tmp_path / "cp.json").positions[str(log.resolve())] == Position(log.stat().st_ino, 6, 2)


def test_a_stop_asked_for_while_waiting_for_the_broker_ends_the_shipping(tmp_path, broker):
    log = _log(tmp_path)
    stand_in = broker([None, KafkaTimeoutError()])
    assert ship(Settings(), [str(log)], checkpoint=tmp_path / "cp.json", stop=lambda: True) == 1
    assert Checkpoint(tmp_path / "cp.json").positions[str(log.resolve())] == Position(log.stat().st_ino, 3, 1)
    assert [line for _, line in stand_in.taken] == [1, 3, 4, 5]  # taken, though after a gap: sent again next run


def test_a_utf16_export_not_taken_whole_is_sent_again_from_its_start(tmp_path, broker):
    export = tmp_path / "trace.csv"
    export.write_bytes("a\r\nb\r\nc\r\n".encode("utf-16"))
    stand_in = broker([None, KafkaTimeoutError()])
    # Only its start and end are places to resume from: the first line comes (and counts) twice,
    # none is lost.
    assert ship(Settings(), [str(export)]) == 4
    assert [line for _, line in stand_in.taken] == [1, 3, 1, 2, 3]
