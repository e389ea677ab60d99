"""Unwrap what log shippers put on mail.logs.raw into (line, source position).

Accepted shapes, so operators can keep the shipper they run:
- `patchgate ship`: {"message": line, "file": path, "line": n, "offset": byte}
- Filebeat:         {"message": line, "log": {"file": {"path": path}, "offset": byte}}
- Fluent Bit tail:  {"log": line, "file": path, "offset": byte} (Path_Key file, Offset_Key offset)
- Vector file:      {"message": line, "file": path}
- a bare text line (not JSON): it keeps the position of the record (the Kafka key names the source).

Envelopes nest when a file of shipper output is itself shipped (`patchgate ship filebeat.ndjson`):
the line inside is unwrapped again, up to MAX_DEPTH levels.
"""
from __future__ import annotations

import json

from pipeline.domain.events import ParseError, SourcePosition


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
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return ParseError(fallback, f"broken JSON envelope: {exc.msg} (column {exc.colno})")
    if not isinstance(document, dict):
        return ParseError(fallback, "JSON envelope is not an object")
    line = document.get("message", document.get("log"))
    log_meta = document.get("log") if isinstance(document.get("log"), dict) else {}
    if isinstance(line, dict):
        line = None
    if not isinstance(line, str):
        return ParseError(fallback, "no log line in the envelope", field="message")
    file_meta = log_meta.get("file") if isinstance(log_meta.get("file"), dict) else {}
    source = document.get("file") or file_meta.get("path")
    offset = document.get("offset", log_meta.get("offset"))
    number = document.get("line")
    position = fallback
    if source:
        position = SourcePosition(
            str(source),
            number if isinstance(number, int) else None,
            offset if isinstance(offset, int) else None,
        )
    if depth < MAX_DEPTH and line.lstrip().startswith("{"):
        return unwrap(line, position, depth + 1)
    return line, position
