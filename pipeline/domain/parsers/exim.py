"""Exim main log: one trace per arrival ("<=") line; the sending host is in H=. An arrival line,
folded here:

    2026-03-05 08:14:01 1rhQ2x-0004Ab-7K <= billing@fabrikam.example
        H=mail.fabrikam.example (helo) [192.0.2.77]:51544 P=esmtps S=8342 id=...

An arrival from a loopback host (a content filter handing mail back), from a local program (no H=)
or from an authenticated user's mail program (A=, or P=esmtpa/esmtpsa) names no server. The other
lines (deliveries, rejections, failed logins, connections, queue runs) are read past.

Exim writes local time unless log_timezone adds the offset; without one the time is taken in the
zone of formats.syslog_timezone (UTC unless set).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import ClassVar

from pipeline.domain.events import MessageTrace, SourcePosition
from pipeline.domain.hostnames import is_loopback
from pipeline.domain.lines import LineRun

FORMAT = "exim"
_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{3})?)(?: (?P<zone>[+-]\d{4}))?(?: \[\d+\])? (?P<rest>.*)$"
)
# 1rhQ2x-0004Ab-7K, or since Exim 4.97 1vDm9G-0000000F3wb-1R0u.
_EXIM_ID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}"
# How a main-log line goes on after its stamp: a message's id, or the start of one of the lines no
# message owns (daemon start, rejections, failed logins, connections, queue runs, lookups).
_MAIN_LOG_LINE = re.compile(
    rf"^(?:{_EXIM_ID} |exim \d|[HU]=|(?:SMTP|TLS) |\S+ authenticator failed for |(?:Start|End) queue run: "
    r"|no (?:host name|IP address) found for |unexpected disconnection while |Connection from \["
    r"|rejected (?:EHLO|HELO) from |cwd=|pid \d+: |Warning: )"
)
_ARRIVAL = re.compile(rf"^(?P<id>{_EXIM_ID}) <= (?P<sender>\S+)(?P<fields>.*)$")
_HOST = re.compile(r" H=(?:(?P<name>[^\s(\[]+)\s*)?(?:\((?P<helo>[^)]*)\)\s*)?\[(?P<ip>[^\]]+)\]")
_SIZE = re.compile(r" S=(?P<size>\d+)")
_AUTHENTICATED = re.compile(r" (?:A=|P=\S*a\b)")
_MESSAGE_ID = re.compile(r" id=(?P<id>\S+)")
# The client certificate's subject (log_selector +tls_peerdn): DN="/CN=mx.example.com" or DN="CN=mx.example.com,O=..."
_PEER_CN = re.compile(r' DN="[^"]*?\bCN=(?P<name>[^,/"]+)')


def looks_like(line: str) -> bool:
    found = _LINE.match(line)
    return bool(found and _MAIN_LOG_LINE.match(found.group("rest")))


@dataclass
class EximState:
    """A source's state while it is an Exim main log: empty, as each arrival line is read alone."""

    FORMAT: ClassVar[str] = FORMAT

    def to_json(self) -> dict:
        return {}

    @classmethod
    def from_json(cls, data: dict) -> EximState:
        return cls()


def parse(state: EximState, run: LineRun, start: int, end: int, out, zone: tzinfo = UTC) -> None:
    """`zone`: of the time stamps without an offset (formats.syslog_timezone)."""
    lines = run.lines
    for index in range(start, end):
        text = lines[index].rstrip("\r\n")
        if not text.strip():
            continue
        found = _LINE.match(text)
        if not found:
            out.error(run.error(index, "no Exim time stamp (YYYY-MM-DD HH:MM:SS) at the start", field="timestamp"))
            continue
        arrival = _ARRIVAL.match(found.group("rest"))
        if arrival:
            out.trace(_trace(found, arrival, run.position(index), zone))


def _trace(found: re.Match, arrival: re.Match, position: SourcePosition, zone: tzinfo) -> MessageTrace:
    pattern = "%Y-%m-%d %H:%M:%S.%f" if "." in found.group("stamp") else "%Y-%m-%d %H:%M:%S"
    offset = found.group("zone")
    stated = zone if offset is None else timezone(
        timedelta(hours=int(offset[:3]), minutes=int(offset[0] + offset[3:])))
    event_time = datetime.strptime(found.group("stamp"), pattern).replace(tzinfo=stated).astimezone(UTC)
    fields = arrival.group("fields")
    host = _HOST.search(fields)
    if host and (is_loopback(host.group("name"), host.group("ip")) or _AUTHENTICATED.search(fields)):
        host = None
    size = _SIZE.search(fields)
    message_id = _MESSAGE_ID.search(fields)
    peer = _PEER_CN.search(fields) if " DN=" in fields else None
    return MessageTrace(
        event_time=event_time,
        source_format=FORMAT,
        position=position,
        event_id="ARRIVAL",
        message_id=message_id.group("id") if message_id else None,
        sender=None if arrival.group("sender") == "<>" else arrival.group("sender"),
        total_bytes=int(size.group("size")) if size else None,
        client_ip=host.group("ip") if host else None,
        client_hostname=(host.group("name") or "").lower() or None if host else None,
        tls_peer=peer.group("name").lower() if peer else None,
    )
