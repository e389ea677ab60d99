"""The pipeline under poison input (a worker killed with SIGKILL mid-stream: test_faults, whose
fault-campaign scenario kills it twice and checks more)."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline import kafka_clients
from pipeline.contracts import topics
from pipeline.contracts.avro import DEAD_LETTER, SERVER_OBSERVATION
from pipeline.edges.decisions import read_decisions
from pipeline.edges.shipper import ship

ROOT = Path(__file__).resolve().parents[2]


def test_poison_input_goes_to_the_dead_letter_topic_and_the_rest_flows(pipeline_env, start_worker, drained, read_topic,
                                                                      tmp_path):
    settings, _ = pipeline_env
    producer = kafka_clients.producer(settings, acks="all")
    raw, traces = settings.topic(topics.RAW), settings.topic(topics.TRACES)
    garbage = [
        (b"/var/log/strange.log", b"\x00\x01 this is not any mail log"),
        (b"/var/log/strange.log", b'{"message": "cut in the middle'),
        (b"/var/log/utf16.log", "\ufeffnot utf-8".encode("utf-16-le")),
    ]
    for key, value in garbage:
        producer.send(raw, key=key, value=value)
    producer.send(traces, key=b"x", value=b"\xc3\x01" + b"\x00" * 8 + b"\x02")  # unknown schema
    producer.send(settings.topic(topics.OBSERVATIONS), key=b"y", value=b"not avro at all")
    producer.send(settings.topic(topics.DECISIONS), key=b"z", value=SERVER_OBSERVATION.encode({
        "server_id": "z", "server": "z", "org": None, "event_time": datetime(2026, 1, 1, tzinfo=UTC),
        "build": None, "evidence": "x", "messages": b""}))  # a valid record of the wrong type
    producer.flush()
    # A bad line in the middle of a packed record: only that line is dead-lettered.
    sample = (ROOT / "deploy" / "samples" / "MSGTRK_EX16MBX01_20260210.LOG").read_bytes().split(b"\n")
    log = tmp_path / "MSGTRK_EX16MBX01_20260210.LOG"
    log.write_bytes(b"\n".join(sample[:103] + [b"2026-02-20T10:00:00.000Z,only,three\r"] + sample[103:]))
    ship(settings, [str(log)])

    worker = start_worker()
    drained(settings, worker)
    decisions = read_decisions(settings)
    # How many decisions lead to stage 2 depends on how many records the file took: versions run on.
    assert decisions[-1].hostname == "ex16mbx01.contoso.example" and decisions[-1].stage == 2
    assert [d.version for d in decisions] == list(range(1, len(decisions) + 1))

    letters = [DEAD_LETTER.decode(record.value) for record in read_topic(settings, topics.DEAD_LETTERS)]
    assert all(letter["raw"] for letter in letters)
    # At-least-once: a record read again after a rebalance is dead-lettered again, hence the sets.
    from_file = {(letter["line"], letter["offset"], letter["raw"], letter["reason"], letter["topic"])
                 for letter in letters if letter["source"] == str(log)}
    assert from_file == {(104, len(b"\n".join(sample[:103])) + 1, b"2026-02-20T10:00:00.000Z,only,three",
                          "3 values for the 30 columns of #Fields", settings.topic(topics.RAW))}

    def where(name, key):
        return f"{settings.topic(name)}/{_partition_of(read_topic, settings, name, key)}/0"

    found = {(letter["topic"].split(".", 1)[1], letter["source"], letter["reason"])
             for letter in letters if letter["source"] != str(log)}
    expected = {
        ("mail.logs.raw", "/var/log/strange.log", "unknown format: not a line of any supported log"),
        ("mail.logs.raw", "/var/log/strange.log", "broken JSON envelope: Unterminated string starting at (column 13)"),
        ("mail.logs.raw", "/var/log/utf16.log", "not UTF-8 at byte 0"),
        ("mail.traces", where(topics.TRACES, b"x"), "unknown writer schema fingerprint 0000000000000000"),
        ("mail.observations", where(topics.OBSERVATIONS, b"y"),
         "not an Avro record in single-object or Confluent framing (15 bytes, starts 6e6f)"),
    }
    assert expected <= found
    [wrong_type] = found - expected
    assert wrong_type[:2] == ("mail.decisions", where(topics.DECISIONS, b"z"))
    assert wrong_type[2].startswith("EnforcementDecision: cannot read body:")


def _partition_of(read_topic, settings, name, key):
    return next(r.partition for r in read_topic(settings, name) if r.key == key)
