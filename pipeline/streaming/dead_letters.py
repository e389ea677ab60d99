"""Send what could not be processed to mail.traces.dlq, with why and where it came from."""
from __future__ import annotations

import logging
from typing import Callable

import faust

from pipeline.domain.events import ParseError
from pipeline.streaming import records
from pipeline.streaming.avro import DEAD_LETTER, AvroContract, AvroDecodeError

log = logging.getLogger(__name__)


async def dead_letter(topic: faust.TopicT, event: faust.EventT, reason: str, error: ParseError | None = None) -> None:
    message = event.message
    raw = message.value or b""
    if error is not None:
        record = records.parse_error_record(error, raw, message.topic, message.partition, message.offset)
    else:
        record = records.dead_letter_record(reason, raw, message.topic, message.partition, message.offset)
    log.warning("dead letter from %s/%s/%s: %s", message.topic, message.partition, message.offset, error or reason)
    await topic.send(key=message.key, value=DEAD_LETTER.encode(record))


async def decoded(topic: faust.TopicT, event: faust.EventT, contract: AvroContract, from_record: Callable):
    """The event's record as a domain object, or None once a record that does not decode was dead-lettered."""
    try:
        return from_record(contract.decode(event.message.value or b""))
    except AvroDecodeError as exc:
        await dead_letter(topic, event, str(exc))
        return None
