"""Canonical events that flow between the stages of the pipeline.

    MessageTrace        one event about one message, whatever format it came from
    TraceGroup          many traces of one source that agree on everything identity reads
                        (a columnar parser hands these over instead of one object per row)
    Sighting            a server that a trace names, with the build it stamped: identity's answer
    ServerObservation   sightings of one server with one build and evidence, folded: how many,
                        first and last event time, and which messages (for the traffic tables)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True)
class SourcePosition:
    """Where a line came from: the file (or shipper's file identity), its line number and byte offset;
    `via`, for a line a shipper wrapped in a JSON envelope, is where that envelope was read."""

    source: str
    line: int | None = None
    offset: int | None = None
    via: SourcePosition | None = None

    @property
    def read_from(self) -> SourcePosition | None:
        """For a line that came in envelopes (they nest), where the file that was read holds it:
        the last `via`."""
        via = self.via
        while via is not None and via.via is not None:
            via = via.via
        return via

    def stored(self) -> list:
        """This position without its source, as JSON for a parser's state: line, byte, and the
        file an envelope was read from (`read_from`) as [source, line, byte] or None."""
        via = self.read_from
        return [self.line, self.offset, None if via is None else [via.source, via.line, via.offset]]

    @classmethod
    def restored(cls, source: str, stored: list) -> SourcePosition:
        """The position `stored` kept, in `source`."""
        line, offset, via = stored
        return cls(source, line, offset, None if via is None else cls(*via))

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
        if self.offset is not None:
            where += f" (byte {self.offset})"
        return where if self.via is None else f"{self.via} -> {where}"


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
    # The connecting client's TLS certificate name, where the log carries it (enforcement scope).
    tls_peer: str | None = None
    org: str | None = None
    # The server that wrote the log line and the build it wrote it with (message tracking logs).
    logged_by: str | None = None
    logged_by_build: str | None = None
    received: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceGroup:
    """`count` traces that share every field identity reads (`template`), with their messages.

    The traces happened from `first_ms` to the template's event_time (the newest). The lists are
    parallel, one entry per message (a message may have several traces, e.g. tracking-log rows):
    its newest event time in epoch milliseconds, its key (see `message_key`), its size in bytes.
    """

    template: MessageTrace
    first_ms: int
    count: int
    times_ms: list[int]
    message_keys: list[str]
    sizes: list[int]


@dataclass(frozen=True)
class Sighting:
    """A server a trace names, with the build (or none) and the evidence for it."""

    server_id: str
    server: str
    org: str | None
    build: str | None
    evidence: str
    behind_relay: str | None = None
    # Product name of a non-Exchange MTA whose version the build field holds (Exim, Sendmail, Postfix),
    # or an Exchange product known without its build (an Exchange 2010 tracking log's 14.0.0.0).
    software: str | None = None
    # Whether the trace came through an inbound path of the enforcement scope (see domain.scope).
    in_scope: bool = True


@dataclass(frozen=True)
class ServerObservation:
    """Sightings of one server with one build and evidence, folded over a batch of input.

    `count` sightings between `first_seen` and `last_seen` (event time). The message lists are
    parallel (key, epoch ms, bytes), one entry per message: ClickHouse counts distinct keys, so
    the same message seen again (a replay, another log row of it) is not counted twice.
    """

    server_id: str
    server: str
    org: str | None
    build: str | None
    evidence: str
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    behind_relay: str | None = None
    software: str | None = None
    message_keys: list[str] = dataclasses.field(default_factory=list, compare=False)
    message_times_ms: list[int] = dataclasses.field(default_factory=list, compare=False)
    message_sizes: list[int] = dataclasses.field(default_factory=list, compare=False)
    in_scope: bool = True

    @classmethod
    def once(cls, server_id: str, server: str, org: str | None, at: datetime, build: str | None, evidence: str,
             message_id: str | None = None, total_bytes: int | None = None, behind_relay: str | None = None,
             software: str | None = None) -> ServerObservation:
        """One sighting of one message (what a v1/v2 record on the wire is)."""
        at_ms = epoch_ms(at)
        return cls(server_id, server, org, build, evidence, at, at, 1, behind_relay, software,
                   [message_key(message_id, at_ms, total_bytes)], [at_ms], [total_bytes or 0])


@dataclass(frozen=True)
class ParseError:
    """A line that could not be read: where, which field and why.

    `origin` is whatever the caller attached to the line (the stream: its Kafka record), so a
    dead letter can name the record as well as the file position.
    """

    position: SourcePosition
    reason: str
    field: str | None = None
    raw: str = ""
    origin: Any = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        at_field = f" field {self.field}:" if self.field else ""
        return f"{self.position}:{at_field} {self.reason}"


def server_id_of(server: str, org: str | None) -> str:
    return f"{org}/{server}" if org else server


def message_key(message_id: str | None, time_ms: int, size: int | None) -> str:
    """What identifies a message in the traffic tables: its Message-ID, else its time and size
    (rare: an Exim arrival without id=, a Postfix message whose cleanup line was not logged)."""
    if message_id:
        return message_id
    moment = from_epoch_ms(time_ms).isoformat(timespec="milliseconds")
    return f"@{moment}/{size}"


def epoch_ms(moment: datetime) -> int:
    """Event times travel as epoch milliseconds, the precision of the wire format and of ClickHouse."""
    # Integer arithmetic: timestamp() * 1000 is a float and can land one millisecond short.
    return (moment - _EPOCH) // _MILLISECOND


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MILLISECOND
