"""The registry client against the registry double over real HTTP on loopback."""
import pytest

from pipeline.contracts.avro import ENFORCEMENT, ENFORCEMENT_DECISION
from pipeline.contracts.schema_registry import SchemaRegistry, SchemaRegistryError
from tests.schema_registry_double import SchemaRegistryDouble


@pytest.fixture
def double():
    with SchemaRegistryDouble() as registry:
        yield registry


def test_a_schema_has_one_id_under_every_subject_and_comes_back_by_it(double):
    client = SchemaRegistry(double.url)
    first = client.register("mail.decisions-value", ENFORCEMENT_DECISION.document)
    assert client.register("other.mail.decisions-value", ENFORCEMENT_DECISION.document) == first
    assert client.register("mail.decisions-value", ENFORCEMENT_DECISION.document) == first
    assert client.register("mail.enforcement-value", ENFORCEMENT.document) != first
    assert double.subjects["mail.decisions-value"] == [first]
    assert client.schema(first) == ENFORCEMENT_DECISION.document


def test_a_new_subject_gets_backward_compatibility_and_an_operators_rule_stays(double):
    double.compatibility["mail.enforcement-value"] = "FULL"
    client = SchemaRegistry(double.url)
    client.register("mail.decisions-value", ENFORCEMENT_DECISION.document)
    client.register("mail.enforcement-value", ENFORCEMENT.document)
    assert double.compatibility == {"mail.decisions-value": "BACKWARD", "mail.enforcement-value": "FULL"}
    assert ("PUT", "/config/mail.enforcement-value") not in double.requests


def test_a_schema_that_breaks_the_subjects_rule_is_refused_naming_subject_and_reason(double):
    client = SchemaRegistry(double.url)
    client.register("mail.decisions-value", ENFORCEMENT_DECISION.document)
    breaking = {**ENFORCEMENT_DECISION.document,
                "fields": [*ENFORCEMENT_DECISION.document["fields"], {"name": "site", "type": "string"}]}
    with pytest.raises(SchemaRegistryError, match=r"refuses schema 'EnforcementDecision' under subject "
                                                  r"'mail.decisions-value'.*compatibility.*\['site'\]"):
        client.register("mail.decisions-value", breaking)


def test_basic_auth_is_sent_and_a_wrong_password_is_named():
    with SchemaRegistryDouble(username="patchgate", password="s3cret-registry") as double:
        assert SchemaRegistry(double.url, "patchgate", "s3cret-registry").register(
            "mail.decisions-value", ENFORCEMENT_DECISION.document) == 1
        with pytest.raises(SchemaRegistryError, match=r"refused GET .*401 Unauthorized.*USERNAME and its password"):
            SchemaRegistry(double.url, "patchgate", "wrong").register("x-value", ENFORCEMENT.document)


def test_an_unknown_id_and_an_unreachable_registry_are_errors(double):
    with pytest.raises(SchemaRegistryError, match=r"answered GET .*/schemas/ids/7 with 404: Schema not found"):
        SchemaRegistry(double.url).schema(7)
    address = double.url
    double.stop()
    with pytest.raises(SchemaRegistryError, match=f"cannot reach the schema registry at {address}"):
        SchemaRegistry(address, timeout_s=2).register("mail.decisions-value", ENFORCEMENT_DECISION.document)
