"""Domain objects <-> Avro records. The field names are the same on both sides on purpose."""
from __future__ import annotations

from dataclasses import asdict, fields

from pipeline.domain.events import MessageTrace, ParseError, ServerObservation, SourcePosition
from pipeline.domain.policy import Decision


# Field by field rather than dataclasses.asdict, which deep-copies and shows up in profiles.
_TRACE_FIELDS = tuple(f.name for f in fields(MessageTrace) if f.name not in ("position", "recipients", "received"))
_OBSERVATION_FIELDS = tuple(f.name for f in fields(ServerObservation))


def trace_record(trace: MessageTrace) -> dict:
    record = {name: getattr(trace, name) for name in _TRACE_FIELDS}
    record.update(
        source=trace.position.source, line=trace.position.line, offset=trace.position.offset,
        recipients=list(trace.recipients), received=list(trace.received),
    )
    return record


def trace_from_record(record: dict) -> MessageTrace:
    fields = dict(record)
    position = SourcePosition(fields.pop("source"), fields.pop("line"), fields.pop("offset"))
    fields["recipients"] = tuple(fields["recipients"])
    fields["received"] = tuple(fields["received"])
    return MessageTrace(position=position, **fields)


def observation_record(observation: ServerObservation) -> dict:
    return {name: getattr(observation, name) for name in _OBSERVATION_FIELDS}


def observation_from_record(record: dict) -> ServerObservation:
    return ServerObservation(**record)


def decision_record(decision: Decision) -> dict:
    record = asdict(decision)
    record["recommended_builds"] = list(decision.recommended_builds)
    return record


def decision_from_record(record: dict) -> Decision:
    return Decision(**{**record, "recommended_builds": tuple(record["recommended_builds"])})


def dead_letter_record(
    reason: str, raw: bytes, topic: str, partition: int, topic_offset: int,
    position: SourcePosition | None = None, field: str | None = None,
) -> dict:
    return {
        "reason": reason,
        "field": field,
        "source": position.source if position else f"{topic}/{partition}/{topic_offset}",
        "line": position.line if position else None,
        "offset": position.offset if position else None,
        "topic": topic,
        "partition": partition,
        "topic_offset": topic_offset,
        "raw": raw,
    }


def parse_error_record(error: ParseError, raw: bytes, topic: str, partition: int, topic_offset: int) -> dict:
    return dead_letter_record(error.reason, raw, topic, partition, topic_offset, error.position, error.field)
