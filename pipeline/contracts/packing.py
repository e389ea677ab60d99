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
