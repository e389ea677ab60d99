"""RFC 5322 header blocks: .eml files, mbox files and files of header blocks separated by blank lines.

A block ends at its first empty line; the Received chain (newest first, folded lines joined) is
what identifies the connecting server. Only the top-level header block of a message is read: the
headers of MIME parts, of an attached message/rfc822, of a bounce's returned original or of a
DMARC failure report's original name servers that never connected to us.

What a source holds is known from its first line. In an mbox ("From " first) every "From "
separator opens a message and its body is skipped up to the next one. Any other source is an
.eml or a file of pasted header blocks: after a block only blank lines may come before the next
one, which starts with a header that opens real header blocks (Received:, Return-Path:, X-...).
Any other line starts a body, which runs to the end of the source: a multipart body starts with
its preamble or a boundary line, never with a header, so MIME part headers are never reached. A
block whose Content-Type says its body is a message (message/rfc822, text/rfc822-headers) has its
body skipped at once, as that body starts with headers. So a file of pasted blocks holds nothing
but blocks and blank lines; several whole messages in one file need "From " separators.

A block longer than MAX_BLOCK_CHARS is reported and dropped, up to its empty line. The state kept
for a source between runs is its kind, where it is (headers, gap, body, dropped) and its open
block; bodies are never kept.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import ClassVar

from pipeline.domain.events import MessageTrace, ParseError, SourcePosition
from pipeline.domain.lines import LineRun
from pipeline.domain.received import read_hop

FORMAT = "rfc5322"
MAX_BLOCK_CHARS = 256 * 1024
_FIELD = re.compile(r"^(?P<name>[!-9;-~]+):[ \t]?(?P<value>.*)$")
_BLOCK_OPENERS = re.compile(
    r"^(Return-Path|Received|Delivered-To|X-[!-9;-~]+|ARC-[A-Za-z-]+|DKIM-Signature|Authentication-Results):", re.I)
# Content types whose body starts with the header fields of another message.
_MESSAGE_BODIES = ("message/", "text/rfc822-headers")

# Where a source is: in a block; in the blank lines after one (or before the first); in a body
# being skipped; in the rest of a block too long to keep.
_HEADERS, _GAP, _BODY, _DROPPED = "headers", "gap", "body", "dropped"


def looks_like(line: str) -> bool:
    return line.startswith("From ") or bool(_BLOCK_OPENERS.match(line))


@dataclass
class HeaderState:
    """A source's state while it holds header blocks: whether it is an mbox (None until its first
    line tells), its phase, and the block open in it: its fields (each a list of its folded lines),
    first line, place (SourcePosition.stored) and size in characters."""

    FORMAT: ClassVar[str] = FORMAT

    mbox: bool | None = None
    phase: str = _GAP
    fields: list[list[str]] = dataclasses.field(default_factory=list)
    start: int | None = None
    chars: int = 0
    place: list | None = None

    def to_json(self) -> dict:
        return {"mbox": self.mbox, "phase": self.phase, "fields": self.fields, "start": self.start,
                "chars": self.chars, "place": self.place}

    @classmethod
    def from_json(cls, data: dict) -> HeaderState:
        if "in_headers" in data:
            # Stored before phases existed: in a block, or after one.
            phase = _HEADERS if data["in_headers"] else _BODY if data["mbox"] else _GAP
        else:
            phase = data["phase"]
        # (A block opened before the place was kept has none.)
        return cls(data["mbox"], phase, data["fields"], data["start"], data["chars"], data.get("place"))


def parse(state: HeaderState, run: LineRun, start: int, end: int, out) -> None:
    lines = run.lines
    for index in range(start, end):
        text = lines[index].lstrip("\ufeff").rstrip("\r\n")
        phase = state.phase
        if phase == _HEADERS:
            if not text.strip():
                _close(state, run.source, out)
                continue
            state.chars += len(text)
            if state.chars > MAX_BLOCK_CHARS:
                out.error(run.error(index, f"header block longer than {MAX_BLOCK_CHARS} characters, dropped"))
                # An mbox skips the rest as a body; elsewhere blocks may follow its blank line.
                state.phase, state.fields, state.start, state.chars = _BODY if state.mbox else _DROPPED, [], None, 0
            elif text[0] in " \t":
                if state.fields:
                    state.fields[-1].append(text)
                else:
                    out.error(run.error(index, "continuation line before any header field"))
            elif _FIELD.match(text):
                state.fields.append([text])
            else:
                out.error(run.error(index, "not a header field (name: value)"))
        elif phase == _BODY:
            if state.mbox and text.startswith("From "):
                _open(state, run, index, [])
        elif phase == _GAP:
            if not text.strip():
                continue
            if state.mbox is None and text.startswith("From "):
                state.mbox = True
                _open(state, run, index, [])
            elif _BLOCK_OPENERS.match(text):
                state.mbox = False
                _open(state, run, index, [[text]])
            else:
                state.phase = _BODY
        elif not text.strip():  # the end of a dropped block
            state.phase = _GAP


def finish(state: HeaderState, source: str, out) -> None:
    """End the open header block at the end of the source."""
    if state.phase == _HEADERS:
        _close(state, source, out)


def holds(state: HeaderState) -> bool:
    """Whether a header block is open that `finish` would end."""
    return state.phase == _HEADERS and bool(state.fields)


def _open(state: HeaderState, run: LineRun, index: int, fields: list[list[str]]) -> None:
    state.phase, state.fields, state.start, state.chars = _HEADERS, fields, run.line_number(index), 0
    state.place = run.position(index).stored()


def _close(state: HeaderState, source: str, out) -> None:
    fields, start, place = state.fields, state.start, state.place
    state.phase, state.fields, state.start, state.place, state.chars = _BODY if state.mbox else _GAP, [], None, None, 0
    if not fields:
        return
    headers: dict[str, list[str]] = {}
    for field in fields:
        name, _, value = " ".join(part.strip() if i else part for i, part in enumerate(field)).partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if (_first(headers, "content-type") or "").lower().startswith(_MESSAGE_BODIES):
        state.phase = _BODY
    # (A block opened before the place was kept has its first line only.)
    result = _trace(headers, SourcePosition.restored(source, place) if place else SourcePosition(source, start, None))
    if isinstance(result, ParseError):
        out.error(result)
    else:
        out.trace(result)


def _trace(headers: dict[str, list[str]], position: SourcePosition) -> MessageTrace | ParseError:
    received = tuple(headers.get("received", []))
    event_time = next((hop.received_at for hop in map(read_hop, received[:1]) if hop.received_at), None)
    if event_time is None and headers.get("date"):
        try:
            event_time = parsedate_to_datetime(headers["date"][0]).astimezone(UTC)
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
