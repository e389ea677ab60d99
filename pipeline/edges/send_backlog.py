"""Records on their way to the broker from a thread of their own (the MTA's enforcement log).

A record counts against the limit from the moment it is taken until the broker acknowledged it or
it was dropped: while it waits, while it is in flight, and while it waits to be sent again after a
failed send. So a record being retried is never pushed out by newer ones; newer ones are refused
instead once the limit is reached.
"""
from __future__ import annotations

import threading
from collections import deque

from kafka.errors import (
    InvalidRecordError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

# Failures of the record itself: sending it again fails again.
_RECORD_REFUSED = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError, InvalidTimestampError)


def sendable_again(failure: BaseException) -> bool:
    """Whether a record whose send failed so may go through another time: a Kafka error that is not
    the record's own (the broker away, a timeout, access refused until an operator grants it). An
    error that is not Kafka's says the record does not encode or serialize."""
    return isinstance(failure, KafkaError) and not isinstance(failure, _RECORD_REFUSED)


class Backlog:
    """Thread-safe: the policy server puts, the sending thread gets, the producer's own thread
    reports what became of a send. Records to be sent again come before the others, in the order
    their sends failed."""

    def __init__(self, limit: int):
        self.limit = limit
        self._waiting: deque[dict] = deque()
        self._again: deque[dict] = deque()
        self._ready = threading.Condition()
        self.unsettled = 0
        # Records refused (the limit reached) or dropped (they can never be sent).
        self.dropped = 0
        # Every failed send, and those since the last one that succeeded.
        self.send_failures = 0
        self.failing = 0

    def put(self, record: dict) -> bool:
        """Take a record to send, unless the limit is reached (then it is counted as dropped)."""
        with self._ready:
            if self.unsettled >= self.limit:
                self.dropped += 1
                return False
            self.unsettled += 1
            self._waiting.append(record)
            self._ready.notify()
            return True

    def get(self, timeout: float) -> dict | None:
        """The next record to send; None if there was none for `timeout` seconds."""
        with self._ready:
            self._ready.wait_for(lambda: self._again or self._waiting, timeout)
            if self._again:
                return self._again.popleft()
            return self._waiting.popleft() if self._waiting else None

    def sent(self) -> int:
        """The broker acknowledged a record; the failed sends it ends a run of (0: none)."""
        with self._ready:
            self.unsettled -= 1
            ended, self.failing = self.failing, 0
            return ended

    def failed(self, record: dict) -> int:
        """A send of `record` failed: it is sent again before the records waiting. The failed sends
        in a row, this one included."""
        with self._ready:
            self.send_failures += 1
            self.failing += 1
            self._again.append(record)
            self._ready.notify()
            return self.failing

    def drop(self) -> None:
        """A record that can never be sent is given up."""
        with self._ready:
            self.unsettled -= 1
            self.dropped += 1

    def qsize(self) -> int:
        """The records waiting to be sent, for the first time or again."""
        with self._ready:
            return len(self._waiting) + len(self._again)

    def empty(self) -> bool:
        """Whether no record waits to be sent, for the first time or again (some may be in flight)."""
        with self._ready:
            return not (self._waiting or self._again)
