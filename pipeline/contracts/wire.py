"""Which framing this process writes its Avro records in, set once at start from the `[kafka]`
wire settings (pipeline.settings.WireSettings), as logging is.

With `wire_format = confluent` each topic's schema is registered under the subject `<topic>-value`
(Confluent's topic-name strategy, which ClickHouse, Kafka Connect and kcat look up) and every record
is framed with its id. Whatever the format, a process given a registry looks up the ids it does not
know there: a site switches formats with records of both kinds on its topics.
"""
from __future__ import annotations

from pipeline.contracts import topics
from pipeline.contracts.avro import (
    DEAD_LETTER,
    ENFORCEMENT,
    ENFORCEMENT_DECISION,
    MESSAGE_TRACE,
    SERVER_OBSERVATION,
    AvroContract,
    fetch_unknown_ids_with,
)
from pipeline.contracts.control import CONTROL_APPLIED, CONTROL_COMMAND
from pipeline.contracts.schema_registry import SchemaRegistry
from pipeline.settings import Settings

# The record type of each topic whose values are Avro (the raw and packed logs and the notices are not).
VALUE_CONTRACTS: dict[str, AvroContract] = {
    topics.TRACES: MESSAGE_TRACE,
    topics.DEAD_LETTERS: DEAD_LETTER,
    topics.OBSERVATIONS: SERVER_OBSERVATION,
    topics.DECISIONS: ENFORCEMENT_DECISION,
    topics.ENFORCEMENT: ENFORCEMENT,
    topics.CONTROL: CONTROL_COMMAND,
    topics.CONTROL_APPLIED: CONTROL_APPLIED,
}


def subject(settings: Settings, topic: str) -> str:
    return f"{settings.topic(topic)}-value"


def registry(settings: Settings) -> SchemaRegistry | None:
    wire = settings.wire
    if wire.registry_url is None:
        return None
    return SchemaRegistry(wire.registry_url, wire.registry_username, wire.registry_password, settings.kafka.ssl_context)


def configure(settings: Settings, writes: bool) -> None:
    """Frame the records this process writes (`writes`: it produces Avro records) as the settings
    say, registering the schemas first for the Confluent format; SchemaRegistryError when the
    registry cannot be reached or refuses one. Readers look unknown ids up in the registry, if any."""
    client = registry(settings)
    fetch_unknown_ids_with(client.schema if client is not None else None)
    confluent = writes and settings.wire.format == "confluent"
    for topic, contract in VALUE_CONTRACTS.items():
        # The registry gives one schema the same id under every subject: the id is the contract's.
        contract.frame_with_id(client.register(subject(settings, topic), contract.document)
                               if confluent and client is not None else None)
