"""Every Kafka client of the project is made here, so that each one reaches the brokers the same
way (bootstrap servers, TLS, SASL: pipeline.kafka_connection): kafka-python's for the edges and
the housekeeping commands, aiokafka's options for the worker's own readers (Faust's clients take
the same connection in streaming.app).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from aiokafka import errors as aiokafka_errors
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
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


class KafkaUnusable(Exception):
    """The brokers cannot be used as configured; the text is one line saying why. `lasting`: trying
    again will not mend it (credentials, certificates, a protocol the listener does not speak), as
    opposed to brokers that do not answer (yet)."""

    def __init__(self, text: str, lasting: bool):
        super().__init__(text)
        self.lasting = lasting


def check_connection(settings: Settings, patience_s: float = 0.0, timeout_s: float = 10.0) -> None:
    """Connect as every client of the process will; KafkaUnusable when that fails, at once when it
    is lasting, after `patience_s` of trying again when no broker answers.

    kafka-python, given a wrong password or an untrusted certificate, tries again for its whole
    bootstrap timeout and then says only that it could not bootstrap: a command checks first, so
    that the operator reads the broker's reason within a second."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return asyncio.run(_bootstrap(settings, timeout_s))
        except KafkaUnusable as unusable:
            if unusable.lasting or time.monotonic() >= deadline:
                raise
        time.sleep(1.0)


async def _bootstrap(settings: Settings, timeout_s: float) -> None:
    client = AIOKafkaClient(**options(settings, request_timeout_ms=int(timeout_s * 1000)))
    # The client logs each server's failure and raises one error for all: the reason is found below.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await client.bootstrap()
    except (aiokafka_errors.KafkaError, OSError, TimeoutError):
        raise await _why_not(settings, timeout_s) from None
    finally:
        quiet.setLevel(level)
        await client.close()


async def _why_not(settings: Settings, timeout_s: float) -> KafkaUnusable:
    """Why no bootstrap server took a connection: the first lasting reason, else that none answered."""
    connection, reasons = settings.kafka, []
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            opened = await asyncio.wait_for(create_conn(host.strip("[]"), int(port),
                                                        request_timeout_ms=int(timeout_s * 1000),
                                                        **connection_options(connection)), timeout_s)
        except aiokafka_errors.SaslAuthenticationFailed as exc:
            return KafkaUnusable(f"{server} refused {connection.who}: {exc.args[0] if exc.args else exc} "
                                 "(check KAFKA_SASL_USERNAME and the password)", lasting=True)
        except aiokafka_errors.UnsupportedSaslMechanismError:
            return KafkaUnusable(f"{server} does not offer the SASL mechanism {connection.sasl_mechanism} "
                                 "(KAFKA_SASL_MECHANISM)", lasting=True)
        except ssl.SSLCertVerificationError as exc:
            trusted = connection.ssl_cafile or "the system's CAs (KAFKA_SSL_CAFILE is not set)"
            return KafkaUnusable(f"{server}: the broker's certificate is not trusted: {exc.verify_message} "
                                 f"(trusting {trusted})", lasting=True)
        except ssl.SSLError as exc:
            return KafkaUnusable(f"{server}: the TLS handshake failed: {exc.reason or exc} "
                                 f"(KAFKA_SECURITY_PROTOCOL={connection.security_protocol})", lasting=True)
        except aiokafka_errors.KafkaConnectionError as exc:
            # The listener took the connection and closed it: it speaks another protocol than ours,
            # or (TLS 1.3 says so only after the handshake) wants a client certificate.
            wanted = ("a client certificate (KAFKA_SSL_CERTFILE), or " if connection.uses_tls
                      and connection.ssl_certfile is None else "")
            return KafkaUnusable(f"{server} closed the connection ({exc}): does its listener want {wanted}another "
                                 f"security protocol than KAFKA_SECURITY_PROTOCOL={connection.security_protocol}?",
                                 lasting=True)
        except (OSError, TimeoutError, aiokafka_errors.KafkaError) as exc:
            reasons.append(f"{server}: {exc or type(exc).__name__}")
        else:
            opened.close()
            reasons.append(f"{server}: connected, but the cluster's metadata did not come")
    return KafkaUnusable(f"no Kafka broker answers ({'; '.join(reasons)})", lasting=False)
