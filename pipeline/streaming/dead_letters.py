"""Send what could not be processed to mail.traces.dlq, with why and where it came from, and stop
the worker when too much of what an agent reads cannot be processed.

Each send function returns the send's delivery future: batch code gathers them with everything
else the batch produced before it lets its state and offsets move on.

The limits apply to the records the pipeline writes itself (traces, observations, decisions,
enforcement), where a record that does not decode means a bad deploy or a foreign producer: going
on would move every record into the dead-letter topic and the offsets past them. Log lines are
outside input, where bad lines are expected; they are dead-lettered without limit.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import faust
from faust.types import RecordMetadata

from pipeline.contracts import records
from pipeline.contracts.avro import DEAD_LETTER, AvroContract, AvroDecodeError
from pipeline.domain.events import ParseError
from pipeline.settings import DeadLetterSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeadLetterLimitExceeded(RuntimeError):
    """Too many records of one agent went to the dead-letter topic: the worker must stop."""


class DeadLetterLimit:
    """Counts one agent's records, good and bad, in their order (as arroyo's DlqLimit).

    More than `max_consecutive` bad records in a row, or a share of bad records above `max_ratio`
    within one window of RATIO_WINDOW records, exceeds it. Windows are counted back to back, so a
    burst is judged against the records around it, not against everything read since the start."""

    RATIO_WINDOW = 10_000

    def __init__(self, agent: str, max_ratio: float, max_consecutive: int):
        self.agent, self.max_ratio, self.max_consecutive = agent, max_ratio, max_consecutive
        self.consecutive = 0
        self.window_records = self.window_bad = 0

    @classmethod
    def for_agent(cls, agent: str, settings: DeadLetterSettings) -> DeadLetterLimit:
        """The limit the `[dead_letters]` settings set, counting the records of one agent."""
        return cls(agent, settings.max_ratio, settings.max_consecutive)

    def good(self) -> None:
        self.consecutive = 0
        self._count(bad=False)

    def bad(self, where: str, reason: str) -> None:
        """Count a bad record; raises DeadLetterLimitExceeded, before it is dead-lettered, when it
        is one too many."""
        self.consecutive += 1
        self._count(bad=True)
        if self.consecutive > self.max_consecutive:
            raise DeadLetterLimitExceeded(
                f"{self.agent}: {self.consecutive} records in a row could not be read (dead_letters.max_consecutive "
                f"= {self.max_consecutive}); the last at {where}: {reason}")
        if self.window_bad > self.max_ratio * self.RATIO_WINDOW:
            raise DeadLetterLimitExceeded(
                f"{self.agent}: {self.window_bad} of {self.window_records} records could not be read, more than "
                f"dead_letters.max_ratio = {self.max_ratio} of {self.RATIO_WINDOW}; the last at {where}: {reason}")

    def _count(self, bad: bool) -> None:
        if self.window_records == self.RATIO_WINDOW:
            self.window_records = self.window_bad = 0
        self.window_records += 1
        self.window_bad += bad


async def dead_letter(topic: faust.TopicT, event: faust.EventT, reason: str) -> Awaitable[RecordMetadata]:
    """A record that could not be read at all: it goes whole, named by topic, partition and offset."""
    message = event.message
    record = records.dead_letter_record(reason, message.value or b"", message.topic, message.partition, message.offset)
    log.warning("dead letter from %s/%s/%s: %s", message.topic, message.partition, message.offset, reason)
    return await topic.send(key=message.key, value=DEAD_LETTER.encode(record))


async def rejected_line(topic: faust.TopicT, error: ParseError) -> Awaitable[RecordMetadata]:
    """A line a parser rejected: named by its file position and by the record it came in
    (`error.origin`, an ingest.Origin); the record itself when it held that one line."""
    origin = error.origin
    raw = origin.raw if origin.raw is not None else error.raw.encode("utf-8")
    record = records.parse_error_record(error, raw, origin.topic, origin.partition, origin.offset)
    log.warning("dead letter from %s/%s/%s: %s", origin.topic, origin.partition, origin.offset, error)
    return await topic.send(key=error.position.source.encode("utf-8"), value=DEAD_LETTER.encode(record))


async def decoded(topic: faust.TopicT, event: faust.EventT, contract: AvroContract, from_record: Callable[[dict], T],
                  pending: list, limit: DeadLetterLimit) -> T | None:
    """The event's record as a domain object, or None once a record that does not decode was
    dead-lettered (its delivery future is added to `pending`). Raises DeadLetterLimitExceeded
    instead when `limit` says it is one bad record too many. A null value is one such record: on a
    compacted topic it is a tombstone, which the agent skips before (contracts.compacted)."""
    try:
        value = from_record(contract.decode(event.message.value or b""))
    except AvroDecodeError as exc:
        message = event.message
        limit.bad(f"{message.topic}/{message.partition}/{message.offset}", str(exc))
        pending.append(await dead_letter(topic, event, str(exc)))
        return None
    limit.good()
    return value
