"""Unwrap what log shippers put around a line into (line, source position).

Accepted shapes, so operators can keep the shipper they run:
- `patchgate ship`: packed records (many lines per record, see pipeline.contracts.packing); a line
  it ships from a file of shipper output is itself one of the shapes below
- Filebeat:         {"message": line, "log": {"file": {"path": path}, "offset": byte}}
- Fluent Bit tail:  {"log": line, "file": path, "offset": byte} (Path_Key file, Offset_Key offset)
- Vector file:      {"message": line, "file": path}
- one line per record: {"message": line, "file": path, "line": n, "offset": byte}
- a bare text line (not JSON): it keeps the position it came with.

Envelopes nest when a file of shipper output is itself shipped (`patchgate ship filebeat.ndjson`):
the line inside is unwrapped again, up to MAX_DEPTH levels.

A line takes the position its envelope names, and keeps the envelope's own (a file of shipper
output read by `evaluate` or `patchgate ship`, its line and byte) as the position's `via`, so an
error names both: "filebeat.ndjson:7 (byte 1234) -> /var/log/mail.log (byte 5120): ...".
"""
from __future__ import annotations

import json

import orjson

from pipeline.domain.events import ParseError, SourcePosition
from pipeline.domain.lines import LineRun

MAX_DEPTH = 3


def unwrap(raw: bytes | str, fallback: SourcePosition, depth: int = 1) -> tuple[str, SourcePosition] | ParseError:
    """The log line and where it came from; `fallback` is the position of the record itself."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ParseError(fallback, f"not UTF-8 at byte {exc.start}")
    text = raw
    if not text.lstrip().startswith("{"):
        return text, fallback
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ParseError(fallback, f"broken JSON envelope: {_json_complaint(text)}")
    fields = _fields(document)
    if fields is None:
        if not isinstance(document, dict):
            return ParseError(fallback, "JSON envelope is not an object")
        return ParseError(fallback, "no log line in the envelope", field="message")
    line, source, number, offset = fields
    position = fallback
    if source:
        position = SourcePosition(
            str(source),
            number,
            offset,
            # So that an error in the line names the envelope as well (a record has no place of its own).
            fallback if (fallback.line, fallback.offset, fallback.via) != (None, None, None) else None,
        )
    if depth < MAX_DEPTH and line.lstrip().startswith("{"):
        return unwrap(line, position, depth + 1)
    return line, position


def one_line(raw: bytes) -> tuple[bytes, str, int | None, int | None] | None:
    """`unwrap` of a one-line record in its common shape, for less: a JSON object whose line names
    its file, holds no line break and is not itself an envelope. The line comes back as UTF-8 with
    its file, line number and byte; None for anything else, which `unwrap` reads (and explains)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    fields = _fields(document)
    if fields is None or not fields[1]:
        return None
    line, source, number, offset = fields
    if "\n" in line or line.lstrip().startswith("{"):
        return None
    try:
        return line.encode("utf-8"), str(source), number, offset
    except UnicodeEncodeError:  # a lone surrogate, escaped in the JSON
        return None


def _fields(document: object) -> tuple[str, object, int | None, int | None] | None:
    """An envelope's line, file, line number and byte; None when it holds no line."""
    if not isinstance(document, dict):
        return None
    log = document.get("log")
    line = document.get("message", log)
    log_meta = log if isinstance(log, dict) else {}
    if not isinstance(line, str):
        return None
    file = log_meta.get("file")
    file_meta = file if isinstance(file, dict) else {}
    source = document.get("file") or file_meta.get("path")
    offset = document.get("offset", log_meta.get("offset"))
    number = document.get("line")
    return (line, source, number if isinstance(number, int) else None,
            offset if isinstance(offset, int) else None)


def unwrap_run(run: LineRun) -> list[LineRun | ParseError]:
    """The run with every envelope line replaced by the line inside, split where the source changes
    (a file of shipper output interleaves many). A run without envelopes comes back as it is."""
    if not _has_envelopes(run):
        return [run]
    out: list[LineRun | ParseError] = []
    lines: list[str] = []
    positions: list[SourcePosition] = []
    origins: list = []
    source = ""

    def close() -> None:
        nonlocal lines, positions, origins
        if lines:
            out.append(LineRun.of_lines(source, lines, positions, run.reference, origins))
            lines, positions, origins = [], [], []

    for index, line in enumerate(run.lines):
        unwrapped = unwrap(line.rstrip("\r"), run.position(index))
        if isinstance(unwrapped, ParseError):
            close()
            out.append(ParseError(unwrapped.position, unwrapped.reason, unwrapped.field, line.rstrip("\r"),
                                  run.origin(index)))
            continue
        text, position = unwrapped
        if position.source != source:
            close()
            source = position.source
        lines.append(text)
        positions.append(position)
        origins.append(run.origin(index))
    close()
    return out


def _has_envelopes(run: LineRun) -> bool:
    raw = run.raw_bytes()
    if raw is not None and b"{" not in raw:
        return False
    return any(line.lstrip()[:1] == "{" for line in run.lines)


def _json_complaint(text: str) -> str:
    """The standard library's wording of what is wrong (orjson's is terser): e.g.
    "Unterminated string starting at (column 13)"."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} (column {exc.colno})"
    return "not valid JSON"
