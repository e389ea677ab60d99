"""RFC 5322 header blocks: .eml files, mbox files and files of header blocks separated by blank lines.

A block ends at its first empty line; the Received chain (newest first, folded lines joined) is
what identifies the connecting server. In an mbox file the body is skipped up to the next
"From " separator; elsewhere a new block starts with a header that opens real header blocks.
A block longer than MAX_BLOCK_CHARS is reported and dropped, so the open block (kept in the
source's state between runs) stays small.
"""
from __future__ import annotations

import re
from datetime import timezone
from email.utils import parsedate_to_datetime

from pipeline.domain.events import MessageTrace, ParseError, SourcePosition
from pipeline.domain.lines import LineRun
from pipeline.domain.received import read_hop

FORMAT = "rfc5322"
MAX_BLOCK_CHARS = 256 * 1024
_FIELD = re.compile(r"^(?P<name>[!-9;-~]+):[ \t]?(?P<value>.*)$")
_BLOCK_OPENERS = re.compile(r"^(Return-Path|Received|Delivered-To|X-[!-9;-~]+|ARC-[A-Za-z-]+|DKIM-Signature|Authentication-Results):", re.I)


def looks_like(line: str) -> bool:
    return line.startswith("From ") or bool(_BLOCK_OPENERS.match(line))


def initial_state() -> dict:
    return {"mbox": False, "in_headers": False, "fields": [], "start": None, "chars": 0}


def parse(state: dict, run: LineRun, start: int, end: int, out) -> None:
    lines = run.lines
    for index in range(start, end):
        text = lines[index].lstrip("\ufeff").rstrip("\r\n")
        if not state["in_headers"]:
            if text.startswith("From "):
                _open(state, run, index, [], mbox=True)
            elif not state["mbox"] and _BLOCK_OPENERS.match(text):
                _open(state, run, index, [[text]], mbox=False)
            continue
        if not text.strip():
            _close(state, run.source, out)
            continue
        state["chars"] += len(text)
        if state["chars"] > MAX_BLOCK_CHARS:
            out.error(run.error(index, f"header block longer than {MAX_BLOCK_CHARS} characters, dropped"))
            _drop(state)
        elif text[0] in " \t":
            if state["fields"]:
                state["fields"][-1].append(text)
            else:
                out.error(run.error(index, "continuation line before any header field"))
        elif _FIELD.match(text):
            state["fields"].append([text])
        else:
            out.error(run.error(index, "not a header field (name: value)"))


def finish(state: dict, source: str, out) -> None:
    """End the open header block at the end of the source."""
    _close(state, source, out)


def _open(state: dict, run: LineRun, index: int, fields: list, mbox: bool) -> None:
    state.update(in_headers=True, fields=fields, start=run.line_number(index), chars=0)
    if mbox:
        state["mbox"] = True


def _drop(state: dict) -> None:
    state.update(in_headers=False, fields=[], start=None, chars=0)


def _close(state: dict, source: str, out) -> None:
    fields, start = state["fields"], state["start"]
    in_headers = state["in_headers"]
    _drop(state)
    if not in_headers or not fields:
        return
    unfolded = [" ".join(part.strip() if i else part for i, part in enumerate(f)) for f in fields]
    result = _trace(unfolded, SourcePosition(source, start, None))
    if isinstance(result, ParseError):
        out.error(result)
    else:
        out.trace(result)


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
