"""Send what could not be processed to mail.traces.dlq, with why and where it came from.

Each function returns the send's delivery future: batch code gathers them with everything else
the batch produced before it lets its state and offsets move on.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import faust

from pipeline.domain.events import ParseError
from pipeline.streaming import records
from pipeline.streaming.avro import DEAD_LETTER, AvroContract, AvroDecodeError

log = logging.getLogger(__name__)


async def dead_letter(topic: faust.TopicT, event: faust.EventT, reason: str) -> asyncio.Future:
    """A record that could not be read at all: it goes whole, named by topic, partition and offset."""
    message = event.message
    record = records.dead_letter_record(reason, message.value or b"", message.topic, message.partition, message.offset)
    log.warning("dead letter from %s/%s/%s: %s", message.topic, message.partition, message.offset, reason)
    return await topic.send(key=message.key, value=DEAD_LETTER.encode(record))


async def rejected_line(topic: faust.TopicT, error: ParseError) -> asyncio.Future:
    """A line a parser rejected: named by its file position and by the record it came in
    (`error.origin`, an ingest.Origin); the record itself when it held that one line."""
    origin = error.origin
    raw = origin.raw if origin.raw is not None else error.raw.encode("utf-8")
    record = records.parse_error_record(error, raw, origin.topic, origin.partition, origin.offset)
    log.warning("dead letter from %s/%s/%s: %s", origin.topic, origin.partition, origin.offset, error)
    return await topic.send(key=error.position.source.encode("utf-8"), value=DEAD_LETTER.encode(record))


async def decoded(topic: faust.TopicT, event: faust.EventT, contract: AvroContract, from_record: Callable,
                  pending: list) -> object | None:
    """The event's record as a domain object, or None once a record that does not decode was
    dead-lettered (its delivery future is added to `pending`)."""
    try:
        return from_record(contract.decode(event.message.value or b""))
    except AvroDecodeError as exc:
        pending.append(await dead_letter(topic, event, str(exc)))
        return None
