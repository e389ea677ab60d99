"""Domain objects <-> Avro records. The field names are the same on both sides on purpose."""
from __future__ import annotations

from dataclasses import asdict

from pipeline.domain.events import MessageTrace, ParseError, ServerObservation, SourcePosition
from pipeline.domain.policy import Decision


def trace_record(trace: MessageTrace) -> dict:
    record = asdict(trace)
    position = record.pop("position")
    record.update(source=position["source"], line=position["line"], offset=position["offset"])
    record["recipients"] = list(trace.recipients)
    record["received"] = list(trace.received)
    return record


def trace_from_record(record: dict) -> MessageTrace:
    fields = dict(record)
    position = SourcePosition(fields.pop("source"), fields.pop("line"), fields.pop("offset"))
    fields["recipients"] = tuple(fields["recipients"])
    fields["received"] = tuple(fields["received"])
    return MessageTrace(position=position, **fields)


def observation_record(observation: ServerObservation) -> dict:
    return asdict(observation)


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
