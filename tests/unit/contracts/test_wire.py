"""The process's framing set from the wire settings, against the registry double on loopback."""
from dataclasses import replace

import pytest

from pipeline.contracts import records, wire
from pipeline.contracts.avro import CONFLUENT_MAGIC, ENFORCEMENT_DECISION, MAGIC, AvroDecodeError
from pipeline.contracts.schema_registry import SchemaRegistryError
from pipeline.settings import Settings, WireSettings
from tests.schema_registry_double import SchemaRegistryDouble
from tests.unit.contracts.test_avro import DECISION


@pytest.fixture
def double():
    with SchemaRegistryDouble() as registry:
        yield registry
    wire.configure(Settings(), writes=False)  # this process's framing is global: back to the default


def confluent(url: str, prefix: str = "") -> Settings:
    return Settings(topic_prefix=prefix, wire=WireSettings("confluent", url))


def test_a_writer_registers_each_topics_schema_under_its_subject_and_frames_records_with_the_id(double):
    wire.configure(confluent(double.url, prefix="site-a."), writes=True)
    assert sorted(double.subjects) == sorted(f"site-a.{topic}-value" for topic in wire.VALUE_CONTRACTS)
    assert set(double.compatibility.values()) == {"BACKWARD"}
    schema_id = double.subjects["site-a.mail.decisions-value"][0]
    data = ENFORCEMENT_DECISION.encode(DECISION)
    assert data[:5] == CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
    assert ENFORCEMENT_DECISION.decode(data) == DECISION
    # Files stay readable without the registry.
    assert ENFORCEMENT_DECISION.single_object(DECISION)[:2] == MAGIC


def test_a_reader_takes_both_framings_on_one_topic_fetching_an_unknown_id_once(double):
    wire.configure(confluent(double.url), writes=True)
    newer = records.decision_record(replace(records.decision_from_record(DECISION), version=3, stage=3))
    values = [ENFORCEMENT_DECISION.single_object(DECISION), ENFORCEMENT_DECISION.encode(newer)]
    # A reader process set to the default framing, given the registry: it knows no id yet.
    wire.configure(replace(confluent(double.url), wire=WireSettings(registry_url=double.url)), writes=False)
    assert ENFORCEMENT_DECISION.encode(DECISION)[:2] == MAGIC
    latest = records.latest_decisions()
    for value in values:
        latest.add(DECISION["server_id"].encode(), value)
    [decision] = latest.by_key.values()
    assert (decision.version, decision.stage) == (3, 3)
    assert [request for request in double.requests if request[0] == "GET" and "/schemas/ids/" in request[1]] == [
        ("GET", f"/schemas/ids/{int.from_bytes(values[1][1:5], 'big')}")]


def test_an_id_no_registry_can_resolve_is_a_decode_error_naming_it(double):
    wire.configure(confluent(double.url), writes=True)
    data = ENFORCEMENT_DECISION.encode(DECISION)
    wire.configure(Settings(), writes=False)
    schema_id = int.from_bytes(data[1:5], "big")
    with pytest.raises(AvroDecodeError, match=f"schema id {schema_id}, and no schema registry is set"):
        ENFORCEMENT_DECISION.decode(data)
    wire.configure(Settings(wire=WireSettings(registry_url=double.url)), writes=False)
    with pytest.raises(AvroDecodeError, match=r"schema id 99: .*404: Schema not found"):
        ENFORCEMENT_DECISION.decode(CONFLUENT_MAGIC + (99).to_bytes(4, "big") + data[5:])


def test_a_registry_that_cannot_be_reached_stops_a_writer_at_start(double):
    address = double.url
    double.stop()
    with pytest.raises(SchemaRegistryError, match=f"cannot reach the schema registry at {address}"):
        wire.configure(confluent(address), writes=True)
