"""Domain objects <-> Avro records. Field names are the same on both sides where they can be; a
ServerObservation's newest time is `event_time` on the wire, as it was when it was one sighting."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import orjson

from pipeline.contracts.avro import ENFORCEMENT_DECISION, AvroDecodeError
from pipeline.contracts.compacted import Compacted
from pipeline.contracts.topics import partition_for
from pipeline.domain.events import MessageTrace, ParseError, ServerObservation, SourcePosition
from pipeline.domain.policy import Decision
from pipeline.domain.schedule import Schedule, Step

# Field by field rather than dataclasses.asdict, which deep-copies and shows up in profiles.
_TRACE_FIELDS = tuple(f.name for f in fields(MessageTrace) if f.name not in ("position", "recipients", "received"))
_DECISION_FIELDS = tuple(f.name for f in fields(Decision))
_STEP_FIELDS = tuple(f.name for f in fields(Step))


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


# A record of observations holds at most about this much, well below the broker's 1 MiB default limit.
OBSERVATIONS_RECORD_BYTES = 512 * 1024
# An entry's fields besides its messages, generously.
_ENTRY_BYTES = 200


def observation_record(observation: ServerObservation) -> dict:
    """A record of one observation."""
    return _packed([_entry(observation)])


def observation_records(observations: Iterable[ServerObservation], partitions: int) -> list[tuple[int, dict]]:
    """The records that carry `observations`, with the partition of mail.observations (of
    `partitions`) each goes to: one per partition (more when one would exceed
    OBSERVATIONS_RECORD_BYTES), every server in the partition its own key gives. One record per
    server was a Kafka record's price per server, and a batch of servers seen for the first time
    has thousands."""
    open_chunks: dict[int, _Chunk] = {}
    chunks: list[_Chunk] = []
    for observation in observations:
        entry = _entry(observation)
        partition = partition_for(observation.server_id.encode("utf-8"), partitions)
        size = len(entry["messages"]) + _ENTRY_BYTES
        chunk = open_chunks.get(partition)
        if chunk is None or chunk.size + size > OBSERVATIONS_RECORD_BYTES:
            chunk = open_chunks[partition] = _Chunk(partition)
            chunks.append(chunk)
        chunk.entries.append(entry)
        chunk.size += size
    return [(chunk.partition, _packed(chunk.entries)) for chunk in chunks]


@dataclass
class _Chunk:
    partition: int
    entries: list[dict] = field(default_factory=list)
    size: int = 0


def _packed(entries: list[dict]) -> dict:
    first, *more = entries
    return {**first, "message_id": None, "total_bytes": None, "more": more}


def _entry(observation: ServerObservation) -> dict:
    return {
        "server_id": observation.server_id, "server": observation.server, "org": observation.org,
        "event_time": observation.last_seen, "first_event_time": observation.first_seen,
        "build": observation.build, "evidence": observation.evidence,
        "behind_relay": observation.behind_relay, "software": observation.software, "count": observation.count,
        "in_scope": observation.in_scope,
        # JSON, so that the sink passes the lists on to ClickHouse without taking them apart.
        "messages": orjson.dumps({"message_keys": observation.message_keys,
                                  "message_times": observation.message_times_ms,
                                  "message_sizes": observation.message_sizes}),
    }


def observations_from_record(record: dict) -> list[ServerObservation]:
    """Every observation a record of any version holds (v1 to v4: one)."""
    return [observation_from_record(record), *map(observation_from_record, record.get("more", ()))]


def observation_from_record(record: dict) -> ServerObservation:
    """The record's own observation, of any version, or one of a v5 record's `more`: a v1/v2 record
    (no first_event_time) is one sighting of one message. A record read without its messages
    (SERVER_OBSERVATION_TIMES) gives none."""
    last = record["event_time"]
    if record["first_event_time"] is None:
        return ServerObservation.once(record["server_id"], record["server"], record["org"], last, record["build"],
                                      record["evidence"], record["message_id"], record["total_bytes"],
                                      record["behind_relay"], record["software"])
    messages = orjson.loads(record["messages"]) if record.get("messages") else {}
    return ServerObservation(
        server_id=record["server_id"], server=record["server"], org=record["org"], build=record["build"],
        evidence=record["evidence"], first_seen=record["first_event_time"], last_seen=last, count=record["count"],
        behind_relay=record["behind_relay"], software=record["software"],
        message_keys=messages.get("message_keys", []), message_times_ms=messages.get("message_times", []),
        message_sizes=messages.get("message_sizes", []), in_scope=record["in_scope"],
    )


def observation_rows(record: dict) -> list[dict]:
    """A decoded record of any version as the rows the sink stores, one per server, each with the
    fields the current version writes for an observation (v1/v2: one message).

    The sink passes `messages` to ClickHouse as it is, so a record whose messages are not the
    JSON object observation_record writes is refused here, not by ClickHouse with its batch."""
    if record["first_event_time"] is None:
        return [observation_record(observation_from_record(record))]
    rows = [record, *record.get("more", ())]
    for row in rows:
        messages = row["messages"]
        if not (messages.startswith(b'{"message_keys":[') and messages.endswith(b"]}")
                and b'"message_sizes":[' in messages):
            raise AvroDecodeError(f"ServerObservation of {row['server_id']!r}: messages is not the JSON object of "
                                  f"message lists ({messages[:40]!r})")
    return rows


def decision_record(decision: Decision) -> dict:
    record = {name: getattr(decision, name) for name in _DECISION_FIELDS}
    record["recommended_builds"] = list(decision.recommended_builds)
    record["schedule"] = schedule_records(decision.schedule)
    return record


def schedule_records(schedule: Schedule) -> list[dict]:
    """A decision's schedule as its records (Avro ScheduleStep, the decisions table's tuples)."""
    return [{name: getattr(step, name) for name in _STEP_FIELDS} for step in schedule]


def decision_from_record(record: dict) -> Decision:
    """The decision of a record of any version (v1, v2: no schedule)."""
    return Decision(**{**record, "recommended_builds": tuple(record["recommended_builds"]),
                       "schedule": tuple(Step(**step) for step in record.get("schedule", ()))})


def decision_from_value(value: bytes) -> Decision:
    """The decision a record of mail.decisions holds; AvroDecodeError if it holds none."""
    return decision_from_record(ENFORCEMENT_DECISION.decode(value))


def newer_decision(held: Decision, new: Decision) -> Decision:
    """Of two decisions for one server, the higher version. An older one can be read late: after
    `patchgate repartition` a server's earlier decisions stay in the partition it left."""
    return new if new.version > held.version else held


def latest_decisions() -> Compacted[Decision]:
    """mail.decisions (keyed by server id) folded into the newest decision per server, servers
    deleted by a tombstone left out: what the MTA's cache and the notifier hold."""
    return Compacted(decision_from_value, keep=newer_decision)


def dead_letter_record(
    reason: str, raw: bytes, topic: str, partition: int, topic_offset: int,
    position: SourcePosition | None = None, field: str | None = None,
) -> dict:
    via = position.read_from if position else None
    return {
        "reason": reason,
        "field": field,
        "source": position.source if position else f"{topic}/{partition}/{topic_offset}",
        "line": position.line if position else None,
        "offset": position.offset if position else None,
        "via_source": via.source if via else None,
        "via_line": via.line if via else None,
        "via_offset": via.offset if via else None,
        "topic": topic,
        "partition": partition,
        "topic_offset": topic_offset,
        "raw": raw,
    }


def parse_error_record(error: ParseError, raw: bytes, topic: str, partition: int, topic_offset: int) -> dict:
    return dead_letter_record(error.reason, raw, topic, partition, topic_offset, error.position, error.field)
