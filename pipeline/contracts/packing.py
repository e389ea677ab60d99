"""Packed records on mail.logs.raw: many whole lines of one file in one Kafka record.

    key      the file's identity (its absolute path), so one file's records stay in order on one
             partition
    value    the lines exactly as the file has them, each with its line end (the last line of a
             file may lack one)
    headers  patchgate.first-line    number of the first line (ASCII decimal, counted from 1)
             patchgate.first-offset  byte offset of the first line in the file; absent when the
                                     bytes are not the file's own (a UTF-16 export, sent as UTF-8)

A record with the quiet-through header and no value is not a line: the worker writes it onto a
partition that received nothing for a while, naming the last offset it had read there (see
pipeline.domain.source_ends).

A record without the first-line header is one line: a JSON envelope (Filebeat, Fluent Bit, Vector)
or a bare line named by the record key (see pipeline.domain.parsers.envelope).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from pipeline.domain.parsers import envelope

FIRST_LINE = "patchgate.first-line"
FIRST_OFFSET = "patchgate.first-offset"
QUIET_THROUGH = "patchgate.quiet-through"
# Lines per record are bounded by bytes: far below Kafka's 1 MB default message limit, and large
# enough that the per-record cost of a consumer is paid per few hundred lines.
MAX_RECORD_BYTES = 256 * 1024


def headers(first_line: int, first_offset: int | None) -> list[tuple[str, bytes]]:
    out = [(FIRST_LINE, str(first_line).encode("ascii"))]
    if first_offset is not None:
        out.append((FIRST_OFFSET, str(first_offset).encode("ascii")))
    return out


# A record's headers as the consumers give them: kafka-python and aiokafka a list of pairs, Faust
# possibly a mapping.
RecordHeaders = Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None


def packed_position(record_headers: RecordHeaders) -> tuple[int, int | None] | None:
    """(first line, first byte offset) of a packed record, or None for a record of one line."""
    found = dict(record_headers or ())
    if FIRST_LINE not in found:
        return None
    offset = found.get(FIRST_OFFSET)
    return int(found[FIRST_LINE]), int(offset) if offset is not None else None


def quiet_headers(through_offset: int) -> list[tuple[str, bytes]]:
    return [(QUIET_THROUGH, str(through_offset).encode("ascii"))]


def quiet_through(record_headers: RecordHeaders) -> int | None:
    """The offset a quiet marker names, or None for a record of lines."""
    pairs = record_headers.items() if isinstance(record_headers, Mapping) else record_headers or ()
    for name, value in pairs:
        if name == QUIET_THROUGH:
            return int(value)
    return None


# Records of a raw partition as the repacker forwards them on mail.logs.packed (see
# pipeline.streaming.repack): their values one after the other, and this header saying where each
# one starts, which key and raw offset it had, and its packed position if it was a packed record.
REPACKED = "patchgate.repacked"


class Unwrapped(NamedTuple):
    """What the JSON envelopes of joined one-line records said besides their lines: the file, and
    each line's number and byte (None where an envelope gave none)."""

    source: str
    numbers: list[int | None]
    places: list[int | None]


class Segment(NamedTuple):
    """Raw records inside a repacked one: their bytes are value[start:end]. A tuple: a worker reads
    many per repacked record.

    Either one raw record as it was, or (`lines` > 0) that many one-line records of one key at
    consecutive raw offsets: their lines, each followed by a \\n the repacker added, which the worker
    takes as one run of lines, as it takes a packed record. Bare lines, or (`unwrapped`) lines taken
    out of JSON envelopes that name one file; the envelopes stay on mail.logs.raw."""

    key: str
    raw_offset: int
    start: int
    end: int
    # A packed record's first line and byte (see `headers`); both None for a record of one line.
    first_line: int | None = None
    first_offset: int | None = None
    lines: int = 0
    unwrapped: Unwrapped | None = None


def is_bare_line(value: bytes) -> bool:
    """A record that is one line of ASCII text and nothing else (not a JSON envelope): what kcat and
    rsyslog send. ASCII, so that joined lines decode as each one alone would."""
    first = value[:1]
    # The first byte before the scans of the whole value: most records that are not bare lines
    # are envelopes. lstrip copies the value: only for the rare line that starts with blanks.
    return (first != b"{" and value.isascii() and b"\n" not in value
            and not (first.isspace() and value.lstrip().startswith(b"{")))


def repacked_headers(raw_topic: str, segments: list[Segment]) -> list[tuple[str, bytes]]:
    """The header of a repacked record whose value is the segments' bytes in their order.

    Compact because it travels with every ~256 KiB of lines: keys listed once, raw offsets and
    byte lengths as differences."""
    keys: dict[str, int] = {}
    rows = []
    previous_offset = segments[0].raw_offset
    for segment in segments:
        row: list[object] = [keys.setdefault(segment.key, len(keys)), segment.raw_offset - previous_offset,
                             segment.end - segment.start, segment.first_line, segment.first_offset, segment.lines]
        if segment.unwrapped is not None:
            row.append(list(segment.unwrapped))
        rows.append(row)
        previous_offset = segment.raw_offset
    document = {"topic": raw_topic, "offset": segments[0].raw_offset, "keys": list(keys), "segments": rows}
    return [(REPACKED, orjson.dumps(document))]


def repacked_segments(record_headers: RecordHeaders) -> tuple[str, list[Segment]] | None:
    """The raw topic and segments of a repacked record, or None for a record that is not one."""
    pairs = record_headers.items() if isinstance(record_headers, Mapping) else record_headers or ()
    found = next((value for name, value in pairs if name == REPACKED), None)
    if found is None:
        return None
    document = orjson.loads(found)
    keys, offset, start = document["keys"], document["offset"], 0
    segments = []
    for key_index, offset_step, length, first_line, first_offset, lines, *unwrapped in document["segments"]:
        offset += offset_step
        segments.append(Segment(keys[key_index], offset, start, start + length, first_line, first_offset, lines,
                                Unwrapped(*unwrapped[0]) if unwrapped else None))
        start += length
    return document["topic"], segments


class RawRecord(NamedTuple):
    """A mail.logs.raw record as the repacker reads it (a tuple: there is one per line)."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: RecordHeaders
    timestamp_ms: int | None


@dataclass(frozen=True)
class Repacked:
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None


# A repacked record closes at MAX_RECORD_BYTES or at this many records, whichever comes first.
MAX_SEGMENTS = 4096


def repack(raw_topic: str, records: Iterable[RawRecord]) -> list[Repacked]:
    """One raw partition's records, in their order, as repacked records, each with the newest
    timestamp of the records it holds (a worker dates syslog lines without a year by it; the
    records of one repacked record were sent within moments of each other). Quiet markers are left out
    (the worker that reads mail.logs.packed marks that topic); a record without a key keeps an
    empty one, which the worker names by its raw partition."""
    out: list[Repacked] = []
    segments: list[Segment] = []
    values: list[bytes] = []
    stamps: list[int] = []
    size = 0
    # The one-line records being joined into one segment: key, first raw offset, first byte, count,
    # and for lines out of envelopes their Unwrapped (None for bare lines).
    lines: list | None = None

    def end_lines() -> None:
        nonlocal lines
        if lines is not None:
            key, offset, start, count, unwrapped = lines
            segments.append(Segment(key, offset, start, size, None, None, count, unwrapped))
            lines = None

    def close() -> None:
        nonlocal size
        end_lines()
        if segments:
            out.append(Repacked(b"".join(values), repacked_headers(raw_topic, segments), max(stamps, default=None)))
            segments.clear()
            values.clear()
            stamps.clear()
            size = 0

    keys: dict[bytes | None, str] = {}
    for record in records:
        first_line = first_offset = None
        # Shippers of one line per record send no headers: those records skip the header reading.
        if record.headers:
            if quiet_through(record.headers) is not None:
                continue
            if (position := packed_position(record.headers)) is not None:
                first_line, first_offset = position
        value = record.value or b""
        key = keys.get(record.key)
        if key is None:
            key = keys[record.key] = record.key.decode("utf-8", "replace") if record.key else ""
        # A bare line, or the line of a JSON envelope that names its file: read here, beside the
        # worker rather than in it, and only the line goes on. Envelopes are mostly metadata, which
        # would be compressed, sent and read again for nothing (a line's dead letter names its
        # envelope's raw offset, and the position the envelope gave).
        one = None
        if first_line is None:
            one = (value, None, None, None) if is_bare_line(value) else envelope.one_line(value)
        if one is not None:
            text, source, number, place = one
            if size + len(text) + 1 > MAX_RECORD_BYTES or len(segments) >= MAX_SEGMENTS:
                close()
            if (lines is None or lines[0] != key or lines[1] + lines[3] != record.offset
                    or (lines[4].source if lines[4] else None) != source):
                end_lines()
                lines = [key, record.offset, size, 0, Unwrapped(source, [], []) if source else None]
            lines[3] += 1
            if source:
                lines[4].numbers.append(number)
                lines[4].places.append(place)
            if record.timestamp_ms is not None:
                stamps.append(record.timestamp_ms)
            values += (text, b"\n")
            size += len(text) + 1
            continue
        end_lines()
        if size + len(value) > MAX_RECORD_BYTES or len(segments) >= MAX_SEGMENTS:
            close()
        segments.append(Segment(key, record.offset, size, size + len(value), first_line, first_offset))
        if record.timestamp_ms is not None:
            stamps.append(record.timestamp_ms)
        values.append(value)
        size += len(value)
    close()
    return out
