from datetime import datetime, timedelta, timezone

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, ServerObservation, SourcePosition, epoch_ms
from pipeline.domain.policy import step
from pipeline.streaming import records
from pipeline.streaming.avro import (
    DEAD_LETTER, ENFORCEMENT_DECISION, MESSAGE_TRACE, SERVER_OBSERVATION, SERVER_OBSERVATION_TIMES,
)

AT = datetime(2026, 2, 10, 8, 14, 3, 127000, tzinfo=timezone.utc)


def test_trace_survives_the_wire():
    trace = MessageTrace(
        event_time=AT, source_format="msgtrk", position=SourcePosition("/logs/MSGTRK1.LOG", 7, 2210),
        event_id="RECEIVE", message_id="<a1@contoso.example>", recipients=("a@x", "b@y"), total_bytes=15230,
        logged_by="ex16mbx01.contoso.example", logged_by_build="15.1.2507.39",
    )
    assert records.trace_from_record(MESSAGE_TRACE.decode(MESSAGE_TRACE.encode(records.trace_record(trace)))) == trace


def test_observation_and_decision_survive_the_wire():
    observation = ServerObservation(
        "ex16mbx01.contoso.example", "ex16mbx01.contoso.example", None, "15.1.2507.39", "msgtrk-version",
        AT, AT + timedelta(hours=2), count=3, message_keys=["<a1@contoso.example>", "<a2@contoso.example>"],
        message_times_ms=[epoch_ms(AT), epoch_ms(AT + timedelta(hours=2))], message_sizes=[15230, 0],
    )
    wire = SERVER_OBSERVATION.encode(records.observation_record(observation))
    back = records.observation_from_record(SERVER_OBSERVATION.decode(wire))
    assert back == observation
    assert (back.message_keys, back.message_times_ms, back.message_sizes) == (
        observation.message_keys, observation.message_times_ms, observation.message_sizes)
    # The policy reads the same record without its message lists.
    light = records.observation_from_record(SERVER_OBSERVATION_TIMES.decode(wire))
    assert light == observation and light.message_keys == []

    _, decision = step(None, observation, PolicyConfig(), load_catalog())
    wire = ENFORCEMENT_DECISION.encode(records.decision_record(decision))
    assert records.decision_from_record(ENFORCEMENT_DECISION.decode(wire)) == decision


def test_the_sink_takes_records_of_every_version_and_refuses_messages_it_cannot_pass_on():
    import pytest

    from pipeline.streaming.avro import AvroDecodeError

    one = ServerObservation.once("s", "s", None, AT, "15.0.1497.2", "received-id", "<m@x>", 10)
    v2 = {**records.observation_record(one), "first_event_time": None, "message_id": "<m@x>", "total_bytes": 10}
    assert records.current_observation_record(v2) == records.observation_record(one)
    current = records.observation_record(one)
    assert records.current_observation_record(current) is current
    with pytest.raises(AvroDecodeError, match="messages is not the JSON object"):
        records.current_observation_record({**current, "messages": b'{"message_keys": 1}'})


def test_dead_letter_without_a_source_position_names_topic_partition_offset():
    record = records.dead_letter_record("bad", b"\x00", "mail.traces", 2, 41)
    assert DEAD_LETTER.decode(DEAD_LETTER.encode(record))["source"] == "mail.traces/2/41"


def test_dead_letter_of_an_enveloped_line_names_the_envelope_too():
    from pipeline.domain.events import ParseError, SourcePosition

    envelope = SourcePosition("/var/spool/filebeat.ndjson", 7, 1234)
    error = ParseError(SourcePosition("/var/log/mail.log", None, 5120, envelope), "no date", "date")
    read = DEAD_LETTER.decode(DEAD_LETTER.encode(records.parse_error_record(error, b"x", "mail.logs.raw", 0, 9)))
    assert (read["source"], read["line"], read["offset"]) == ("/var/log/mail.log", None, 5120)
    assert (read["via_source"], read["via_line"], read["via_offset"]) == ("/var/spool/filebeat.ndjson", 7, 1234)


def test_dead_letters_written_before_the_envelope_fields_read_without_them():
    from pipeline.streaming.avro import AvroContract

    old = {key: value for key, value in records.dead_letter_record("bad", b"\x00", "mail.traces", 2, 41).items()
           if not key.startswith("via_")}
    read = DEAD_LETTER.decode(AvroContract("history/DeadLetter.v1").encode(old))
    assert read["source"] == "mail.traces/2/41" and read["via_source"] is None


def test_dead_letter_of_a_line_in_nested_envelopes_names_the_file_that_was_read():
    from pipeline.domain.events import ParseError, SourcePosition

    read_file = SourcePosition("/var/spool/shipped.jsonl", 12, 2048)
    outer = SourcePosition("/var/spool/vector.ndjson", None, None, read_file)  # Vector gives no position
    error = ParseError(SourcePosition("/var/log/mail.log", None, None, outer), "no date", "date")
    record = records.parse_error_record(error, b"x", "mail.logs.raw", 0, 9)
    assert (record["via_source"], record["via_line"], record["via_offset"]) == ("/var/spool/shipped.jsonl", 12, 2048)
