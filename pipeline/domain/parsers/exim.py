"""Exim main log: one trace per arrival ("<=") line; the sending host is in H=.

    2026-03-05 08:14:01 1rhQ2x-0004Ab-7K <= billing@fabrikam.example H=mail.fabrikam.example (helo) [192.0.2.77]:51544 P=esmtps S=8342 id=...

Exim writes local time unless log_timezone adds the offset; without one the time is taken as UTC.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from pipeline.domain.events import MessageTrace, SourcePosition
from pipeline.domain.lines import LineRun

FORMAT = "exim"
_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{3})?)(?: (?P<zone>[+-]\d{4}))?(?: \[\d+\])? (?P<rest>.*)$"
)
_EXIM_ID = r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}"
_ARRIVAL = re.compile(rf"^(?P<id>{_EXIM_ID}) <= (?P<sender>\S+)(?P<fields>.*)$")
_HOST = re.compile(r" H=(?:(?P<name>[^\s(\[]+)\s*)?(?:\((?P<helo>[^)]*)\)\s*)?\[(?P<ip>[^\]]+)\]")
_SIZE = re.compile(r" S=(?P<size>\d+)")
_MESSAGE_ID = re.compile(r" id=(?P<id>\S+)")


def looks_like(line: str) -> bool:
    found = _LINE.match(line)
    return bool(found and re.match(rf"^(?:{_EXIM_ID} |exim \d)", found.group("rest")))


def initial_state() -> dict:
    return {}


def parse(state: dict, run: LineRun, start: int, end: int, out) -> None:
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
            out.trace(_trace(found, arrival, run.position(index)))


def _trace(found: re.Match, arrival: re.Match, position: SourcePosition) -> MessageTrace:
    stamp = found.group("stamp") + (found.group("zone") or "+0000")
    pattern = "%Y-%m-%d %H:%M:%S.%f%z" if "." in found.group("stamp") else "%Y-%m-%d %H:%M:%S%z"
    event_time = datetime.strptime(stamp, pattern).astimezone(timezone.utc)
    fields = arrival.group("fields")
    host = _HOST.search(fields)
    size = _SIZE.search(fields)
    message_id = _MESSAGE_ID.search(fields)
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
    )
