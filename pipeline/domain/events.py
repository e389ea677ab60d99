"""Canonical events that flow between the stages of the pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SourcePosition:
    """Where a line came from: the file (or shipper's file identity), its line number and byte offset."""

    source: str
    line: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
        if self.offset is not None:
            where += f" (byte {self.offset})"
        return where


@dataclass(frozen=True)
class MessageTrace:
    """One event about one message, whatever format it came from."""

    event_time: datetime
    source_format: str
    position: SourcePosition
    event_id: str | None = None
    message_id: str | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    total_bytes: int | None = None
    client_ip: str | None = None
    client_hostname: str | None = None
    server_ip: str | None = None
    server_hostname: str | None = None
    connector_id: str | None = None
    org: str | None = None
    # The server that wrote the log line and the build it wrote it with (message tracking logs).
    logged_by: str | None = None
    logged_by_build: str | None = None
    received: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerObservation:
    """A mail server seen at event time, with the build it stamped (or none)."""

    server_id: str
    server: str
    org: str | None
    event_time: datetime
    build: str | None
    evidence: str
    message_id: str | None = None
    total_bytes: int | None = None
    behind_relay: str | None = None
    # Product name of a non-Exchange MTA whose version the build field holds (Exim, Sendmail, Postfix).
    software: str | None = None


@dataclass(frozen=True)
class ParseError:
    """A line that could not be read: where, which field and why."""

    position: SourcePosition
    reason: str
    field: str | None = None
    raw: str = ""

    def __str__(self) -> str:
        at_field = f" field {self.field}:" if self.field else ""
        return f"{self.position}:{at_field} {self.reason}"


def server_id_of(server: str, org: str | None) -> str:
    return f"{org}/{server}" if org else server

