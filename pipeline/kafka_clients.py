"""Every Kafka client of the project is made here, so that each one reaches the brokers the same
way (bootstrap servers, TLS, SASL: pipeline.kafka_connection): kafka-python's for the edges and
the housekeeping commands, aiokafka's options for the worker's own readers (Faust's clients take
the same connection in streaming.app).
"""
from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from pipeline.kafka_connection import KafkaConnection
from pipeline.settings import Settings


def connection_options(connection: KafkaConnection) -> dict[str, Any]:
    """The security options, by the names kafka-python and aiokafka share."""
    options: dict[str, Any] = {"security_protocol": connection.security_protocol}
    if connection.uses_sasl:
        options.update(sasl_mechanism=connection.sasl_mechanism, sasl_plain_username=connection.sasl_username,
                       sasl_plain_password=connection.sasl_password)
    if connection.uses_tls:
        options["ssl_context"] = connection.ssl_context
    return options


def options(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A client's keyword arguments: where the brokers are, how to reach them, and `extra`."""
    return {"bootstrap_servers": settings.bootstrap_servers.split(","), **connection_options(settings.kafka), **extra}


def producer(settings: Settings, **extra: Any) -> KafkaProducer:
    return KafkaProducer(**options(settings, **extra))


def consumer(settings: Settings, **extra: Any) -> KafkaConsumer:
    """A consumer that commits nothing unless `extra` says otherwise (most readers assign partitions)."""
    return KafkaConsumer(**options(settings, **{"enable_auto_commit": False, **extra}))


def admin(settings: Settings, client_id: str, **extra: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**options(settings, client_id=client_id, **extra))
