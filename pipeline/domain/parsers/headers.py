"""RFC 5322 header blocks: .eml files, mbox files and files of header blocks separated by blank lines.

A block ends at its first empty line; the Received chain (newest first, folded lines joined) is
what identifies the connecting server. In an mbox file the body is skipped up to the next
"From " separator; elsewhere a new block starts with a header that opens real header blocks.
"""
from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from datetime import timezone

from pipeline.domain.events import MessageTrace, ParseError, SourcePosition
from pipeline.domain.received import read_hop

FORMAT = "rfc5322"
_FIELD = re.compile(r"^(?P<name>[!-9;-~]+):[ \t]?(?P<value>.*)$")
_BLOCK_OPENERS = re.compile(r"^(Return-Path|Received|Delivered-To|X-[!-9;-~]+|ARC-[A-Za-z-]+|DKIM-Signature|Authentication-Results):", re.I)


def looks_like(line: str) -> bool:
    return line.startswith("From ") or bool(_BLOCK_OPENERS.match(line))


def initial_state() -> dict:
    return {"mbox": False, "in_headers": False, "fields": [], "start": None}


def parse_line(state: dict, line: str, position: SourcePosition) -> tuple[dict, list]:
    text = line.lstrip("\ufeff").rstrip("\r\n")
    state = dict(state)
    if not state["in_headers"]:
        if text.startswith("From "):
            state.update(mbox=True, in_headers=True, fields=[], start=position.line)
        elif not state["mbox"] and _BLOCK_OPENERS.match(text):
            state.update(in_headers=True, fields=[[text]], start=position.line)
        return state, []
    if not text.strip():
        return finish(state, position)
    if text[0] in " \t":
        if not state["fields"]:
            return state, [ParseError(position, "continuation line before any header field", raw=text)]
        state["fields"] = state["fields"][:-1] + [state["fields"][-1] + [text]]
        return state, []
    if not _FIELD.match(text):
        return state, [ParseError(position, "not a header field (name: value)", raw=text)]
    state["fields"] = state["fields"] + [[text]]
    return state, []


def finish(state: dict, position: SourcePosition) -> tuple[dict, list]:
    """End the open header block (at an empty line, or at the end of the file)."""
    fields = state["fields"]
    done = {**state, "in_headers": False, "fields": [], "start": None}
    if not state["in_headers"] or not fields:
        return done, []
    block_position = SourcePosition(position.source, state["start"], None)
    return done, [_trace([" ".join(part.strip() if i else part for i, part in enumerate(f)) for f in fields], block_position)]


def _trace(fields: list[str], position: SourcePosition) -> MessageTrace | ParseError:
    headers: dict[str, list[str]] = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    received = tuple(headers.get("received", []))
    event_time = next((hop.received_at for hop in map(read_hop, received[:1]) if hop.received_at), None)
    if event_time is None and headers.get("date"):
        try:
            event_time = parsedate_to_datetime(headers["date"][0]).astimezone(timezone.utc)
        except (TypeError, ValueError):
            event_time = None
    if event_time is None:
        return ParseError(position, "no dated Received header and no Date header", field="Received")
    return MessageTrace(
        event_time=event_time,
        source_format=FORMAT,
        position=position,
        message_id=_first(headers, "message-id"),
        sender=_first(headers, "return-path") or _first(headers, "from"),
        recipients=tuple(r.strip() for r in (_first(headers, "to") or "").split(",") if r.strip()),
        org=(_first(headers, "x-originatororg") or "").lower() or None,
        received=received,
    )


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None
