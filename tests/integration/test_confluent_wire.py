"""The Confluent wire format end to end: the pipeline writes mail.decisions framed with registry ids,
ClickHouse (the embedded engine) reads those very records with FORMAT AvroConfluent and the column
list docs/confluent-wire-format.md gives, field for field, and a topic holding both framings reads."""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime

import clickhouse_connect
import pytest

from pipeline.contracts import records, topics, wire
from pipeline.contracts.avro import CONFLUENT_MAGIC, ENFORCEMENT_DECISION
from pipeline.edges.shipper import ship
from testkit.ports import free_port
from tests.integration.conftest import (
    ROOT,
    Workers,
    _drained,
    _read_topic,
    frame_as_the_run_does,
    isolated_env,
    patchgate,
    publish_decisions,
)
from tests.schema_registry_double import SchemaRegistryDouble
from tests.unit.contracts.test_avro import DECISION

SAMPLES = ROOT / "deploy" / "samples"
FILES = ["MSGTRK_EX13MBX01_20260102.LOG", "MSGTRK_EX16MBX01_20260210.LOG", "MSGTRK_EX19MBX01_20260301.LOG"]
DOC = ROOT / "docs" / "confluent-wire-format.md"


def documented_columns() -> str:
    """The column list of the documented Kafka-engine table."""
    [columns] = re.findall(r"CREATE TABLE patchgate_decisions_queue\s*\((.*?)\)\s*ENGINE = Kafka", DOC.read_text(),
                           re.DOTALL)
    return " ".join(columns.split()).replace("'", "\\'")  # for a string literal


@pytest.fixture
def registry():
    with SchemaRegistryDouble() as double:
        yield double


@pytest.fixture
def confluent_env(tmp_path, registry):
    base = {**os.environ, "PATCHGATE_WIRE_FORMAT": "confluent",
            "PATCHGATE_SCHEMA_REGISTRY_URL": registry.url}
    settings, env = isolated_env(tmp_path / "data", base=base)
    wire.configure(settings, writes=False)  # this process reads as a reader given the registry does
    yield settings, env
    frame_as_the_run_does()


def test_clickhouse_reads_the_pipelines_decisions_with_avro_confluent(confluent_env, registry, tmp_path):
    settings, env = confluent_env
    assert ship(settings, [str(SAMPLES / name) for name in FILES]) == 560 + 280 + 140
    workers = Workers(env, tmp_path)
    try:
        worker = workers.start()
        _drained(settings, worker)
        values = [record.value for record in _read_topic(settings, topics.DECISIONS)]
        assert worker.stop() == 0, worker.tail()
    finally:
        workers.close()

    # Every schema registered under its topic's subject, mail.decisions' one framing every decision.
    assert sorted(registry.subjects) == sorted(f"{settings.topic(topic)}-value" for topic in (
        topics.TRACES, topics.DEAD_LETTERS, topics.OBSERVATIONS, topics.DECISIONS, topics.ENFORCEMENT,
        topics.CONTROL, topics.CONTROL_APPLIED))
    [decisions_id] = registry.subjects[f"{settings.topic(topics.DECISIONS)}-value"]
    assert len(values) >= 3
    assert {value[:5] for value in values} == {CONFLUENT_MAGIC + decisions_id.to_bytes(4, "big")}
    decoded = [ENFORCEMENT_DECISION.decode(value) for value in values]
    assert {d["hostname"]: d["stage"] for d in decoded if d["version"] == max(
        e["version"] for e in decoded if e["hostname"] == d["hostname"])} == {
        "ex13mbx01.contoso.example": 6, "ex16mbx01.contoso.example": 2, "ex19mbx01.fabrikam.example": 0}

    # ClickHouse's own reader, given only the records and the registry: its schema by id.
    framed = tmp_path / "decisions.bin"
    framed.write_bytes(b"".join(values))
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'clickhouse'}")
    try:
        result = client.query(f"SELECT * FROM file('{framed}', 'AvroConfluent', '{documented_columns()}') "
                              f"SETTINGS format_avro_schema_registry_url = '{registry.url}', session_timezone = 'UTC'")
    finally:
        client.close()
    assert ("GET", f"/schemas/ids/{decisions_id}") in registry.requests
    read = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    assert list(result.column_names) == [field["name"] for field in ENFORCEMENT_DECISION.document["fields"]]
    assert len(read) == len(decoded)
    for got, record in zip(read, decoded, strict=True):
        want = {name: _as_clickhouse_gives(value) for name, value in record.items()}
        assert got == want, {name: (got[name], want[name]) for name in want if got[name] != want[name]}


def _as_clickhouse_gives(value):
    """A decoded Avro value as ClickHouse returns it: timestamps without their (UTC) zone, in the
    records of an array too."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, list):
        return [{name: _as_clickhouse_gives(field) for name, field in item.items()} if isinstance(item, dict) else item
                for item in value]
    return value


def test_a_topic_holding_both_framings_reads(confluent_env, registry):
    """A site switching formats: an older single-object decision and a newer Confluent one of the
    same server on mail.decisions; a reader set to the default format, given the registry, reads
    both."""
    settings, env = confluent_env
    older = records.decision_from_record(DECISION)
    publish_decisions(settings, older)  # this process has the default framing: single-object
    wire.configure(settings, writes=True)
    publish_decisions(settings, replace(older, version=older.version + 1, stage=3))
    assert [record.value[:1] for record in _read_topic(settings, topics.DECISIONS)] == [b"\xc3", CONFLUENT_MAGIC]

    shown = patchgate({**env, "PATCHGATE_WIRE_FORMAT": "single-object"}, "decisions")
    assert shown.returncode == 0, shown.stderr
    assert [(row["server"], row["stage"]) for row in map(json.loads, shown.stdout.splitlines())] == [
        (older.hostname, older.stage), (older.hostname, 3)]


def test_a_writer_stops_at_start_when_the_registry_cannot_be_reached(confluent_env):
    _, env = confluent_env
    dead = f"http://127.0.0.1:{free_port()}"
    answer = patchgate({**env, "PATCHGATE_SCHEMA_REGISTRY_URL": dead}, "pause", "fabrikam.example", "--days", "1",
                       "--reason", "maintenance")
    assert answer.returncode == 1
    assert answer.stderr.strip().startswith(f"patchgate pause: cannot reach the schema registry at {dead}")
