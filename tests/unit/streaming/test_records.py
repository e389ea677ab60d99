from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pipeline.catalog_files import load_catalog
from pipeline.contracts import records
from pipeline.contracts.avro import (
    DEAD_LETTER,
    ENFORCEMENT_DECISION,
    MESSAGE_TRACE,
    SERVER_OBSERVATION,
    SERVER_OBSERVATION_TIMES,
)
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, ServerObservation, SourcePosition, epoch_ms
from pipeline.domain.policy import step

AT = datetime(2026, 2, 10, 8, 14, 3, 127000, tzinfo=UTC)


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

    from pipeline.contracts.avro import AvroDecodeError

    one = ServerObservation.once("s", "s", None, AT, "15.0.1497.2", "received-id", "<m@x>", 10)
    v2 = {**records.observation_record(one), "first_event_time": None, "message_id": "<m@x>", "total_bytes": 10}
    assert records.observation_rows(v2) == [records.observation_record(one)]
    current = records.observation_record(one)
    assert records.observation_rows(current) == [current]
    with pytest.raises(AvroDecodeError, match="messages is not the JSON object"):
        records.observation_rows({**current, "messages": b'{"message_keys": 1}'})
    [(_, packed)] = records.observation_records([one, replace(one, server_id="t", server="t")], partitions=1)
    assert [row["server_id"] for row in records.observation_rows(packed)] == ["s", "t"]
    packed["more"][0]["messages"] = b"[]"
    with pytest.raises(AvroDecodeError, match="ServerObservation of 't': messages is not"):
        records.observation_rows(packed)


def seen(n: int, messages: int = 1) -> ServerObservation:
    server = f"mx{n}.fabrikam{n % 7}.example"
    return ServerObservation(
        server, server, f"fabrikam{n % 7}.example" if n % 2 else None, "15.1.2507.39", "received-id",
        AT, AT + timedelta(minutes=n), count=messages, message_keys=[f"<{n}.{m}@x>" for m in range(messages)],
        message_times_ms=[epoch_ms(AT)] * messages, message_sizes=[1000 + m for m in range(messages)],
        behind_relay="relay.example" if n % 3 == 0 else None, software="Postfix" if n % 5 == 0 else None,
        in_scope=n % 4 != 0,
    )


def test_observations_travel_one_record_per_partition_each_where_its_key_goes():
    """A batch of many servers becomes a record per partition of mail.observations; every server in
    it is placed where Kafka's default partitioner places its own key, and reads back whole."""
    from aiokafka.partitioner import DefaultPartitioner

    batch = [seen(n) for n in range(500)]
    placed = records.observation_records(batch, partitions=12)
    assert sorted(partition for partition, _ in placed) == list(range(12))
    back = []
    for partition, record in placed:
        read = records.observations_from_record(SERVER_OBSERVATION.decode(SERVER_OBSERVATION.encode(record)))
        assert {DefaultPartitioner()(o.server_id.encode(), list(range(12)), list(range(12))) for o in read} == {
            partition}
        back.extend(read)
    assert sorted(back, key=lambda o: o.server_id) == sorted(batch, key=lambda o: o.server_id)
    assert {o.server_id: o.message_keys for o in back} == {o.server_id: o.message_keys for o in batch}
    # The policy's reading skips the messages of every server, not only of the first.
    light = records.observations_from_record(SERVER_OBSERVATION_TIMES.decode(SERVER_OBSERVATION.encode(placed[0][1])))
    assert len(light) > 1 and all(o.message_keys == [] and o.count == 1 for o in light)


def test_a_partition_s_observations_are_cut_into_records_below_the_size_bound():
    batch = [seen(n, messages=400) for n in range(200)]
    placed = records.observation_records(batch, partitions=2)
    assert len(placed) > 2
    sizes = [len(SERVER_OBSERVATION.encode(record)) for _, record in placed]
    assert max(sizes) <= records.OBSERVATIONS_RECORD_BYTES
    assert sum(len(records.observations_from_record(record)) for _, record in placed) == 200


def test_a_v4_record_is_one_observation():
    from pipeline.contracts.avro import AvroContract

    current = records.observation_record(seen(1))
    v4 = {name: value for name, value in current.items() if name != "more"}
    read = SERVER_OBSERVATION.decode(AvroContract("history/ServerObservation.v4").encode(v4))
    assert records.observations_from_record(read) == [seen(1)]


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
    from pipeline.contracts.avro import AvroContract

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
