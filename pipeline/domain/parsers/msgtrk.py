"""Exchange message tracking logs (MSGTRK*.LOG), Exchange 2007 to Exchange Server SE.

Each file starts with a header block; its `#Fields:` line names the columns, and the list differs
between versions (21 fields in 2007, 26 in 2010, 27 or 30 in 2013+), so the columns are always
taken from the file itself. Shippers concatenate files, so a new header block can appear at any
line and replaces the previous one. The parser is a pure function of (header, line): the caller
keeps the header per source file.
"""
from __future__ import annotations

import csv
from datetime import datetime, timezone

from pipeline.domain.builds import Build
from pipeline.domain.events import MessageTrace, ParseError, SourcePosition

FORMAT = "msgtrk"
_SEND_EVENTS = frozenset({"SEND", "SENDEXTERNAL"})


_HEADER_NAMES = ("#software:", "#version:", "#log-type:", "#date:", "#fields:")


def looks_like(line: str) -> bool:
    return line.lstrip("\ufeff").lower().startswith(_HEADER_NAMES)


def initial_state() -> dict:
    return {"version": None, "fields": None}


def parse_line(state: dict, line: str, position: SourcePosition) -> tuple[dict, list]:
    """Read one line: the state in force after it and the events or errors it gave (none for a header line)."""
    text = line.lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        return state, []
    if text.startswith("#"):
        return _header_line(state, text), []
    fields = state["fields"]
    if fields is None:
        return state, [ParseError(position, "data line before any #Fields: header line", raw=text)]
    try:
        values = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        return state, [ParseError(position, f"broken CSV quoting: {exc}", raw=text)]
    if len(values) != len(fields):
        return state, [ParseError(position, f"{len(values)} values for the {len(fields)} columns of #Fields", raw=text)]
    return state, [_trace(state["version"], dict(zip(fields, values)), position, text)]


def _header_line(state: dict, text: str) -> dict:
    name, _, value = text[1:].partition(":")
    name, value = name.strip().lower(), value.strip()
    if name == "software":
        # A new file's header block starts; nothing of the previous file carries over.
        return initial_state()
    if name == "version":
        return {**state, "version": value}
    if name == "fields":
        return {**state, "fields": [f.strip().lower() for f in value.split(",")]}
    return state


def _trace(version: str | None, row: dict[str, str], position: SourcePosition, text: str) -> MessageTrace | ParseError:
    stamp = row.get("date-time", "")
    try:
        event_time = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return ParseError(position, f"{stamp!r} is not an ISO-8601 time", field="date-time", raw=text)
    size = row.get("total-bytes", "")
    if size and not size.isdigit():
        return ParseError(position, f"{size!r} is not a byte count", field="total-bytes", raw=text)
    event_id = row.get("event-id", "").upper() or None
    writer = row.get("client-hostname") if event_id in _SEND_EVENTS else row.get("server-hostname")
    return MessageTrace(
        event_time=event_time,
        source_format=FORMAT,
        position=position,
        event_id=event_id,
        message_id=row.get("message-id") or None,
        sender=row.get("sender-address") or None,
        recipients=tuple(r for r in row.get("recipient-address", "").split(";") if r),
        total_bytes=int(size) if size else None,
        client_ip=row.get("client-ip") or None,
        client_hostname=row.get("client-hostname") or None,
        server_ip=row.get("server-ip") or None,
        server_hostname=row.get("server-hostname") or None,
        connector_id=row.get("connector-id") or None,
        org=row.get("tenant-id") or None,
        logged_by=writer.lower() if writer else None,
        logged_by_build=writer_build(row.get("schema-version") or version),
    )


def writer_build(text: str | None) -> str | None:
    """The build in #Version / schema-version, or None for the constants that are not builds.

    Exchange 2010 writes 14.0.0.0 and protocol logs 15.0.0.0; a real build never has build number 0.
    """
    build = Build.parse(text)
    if build is None or len(build.parts) < 3 or build.parts[2] == 0:
        return None
    return str(build)
