"""Runs of lines: what the parsers read, whether a shipper packed many lines into one Kafka record,
sent them one by one, or `evaluate` read them from a file.

Positions (file, line number, byte offset) are worked out only when something asks for one,
which for most lines is never: a line's position matters when it is reported as bad.

A line longer than `formats.max_line_bytes` is never parsed: parsing takes many times a line's size
in memory. Readers of files skip it unread (pipeline.files); a record that brings one has it taken
out here, as an error at its position.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from pipeline.domain.events import ParseError, SourcePosition


class LineRun:
    """Consecutive lines of one source (file), in order, without their \\n (a \\r before it stays: every
    parser strips it, and the CSV reader takes \\r\\n as a line end anyway).

    Either contiguous (`packed`: the first line's number and byte offset, the rest follow from the
    bytes, which are decoded into lines only when someone reads `lines`: the tracking-log reader
    takes the bytes as they are) or a list of lines that each bring their own position and origin
    (`of_lines`).
    `reference` dates syslog lines that carry no year; `origin` is the caller's handle on where the
    line travelled (the stream: its Kafka record), passed through to errors.
    """

    __slots__ = ("source", "_lines", "reference", "_first_line", "_first_offset", "_raw", "_offsets",
                 "_positions", "_origins", "_origin", "_origin_starts", "_count")

    def __init__(self, source: str, lines: list[str] | None, reference: datetime | None, *,
                 first_line: int | None = None, first_offset: int | None = None, raw: bytes | None = None,
                 positions: Sequence[SourcePosition] | None = None, origins: Sequence[Any] | None = None,
                 origin: Any = None, origin_starts: list[tuple[int, Any]] | None = None):
        self.source = source
        self._lines = lines
        self.reference = reference
        self._first_line = first_line
        self._first_offset = first_offset
        self._raw = raw
        self._offsets: list[int] | None = None
        self._positions = positions
        self._origins = origins
        self._origin = origin
        # Joined packed runs: (index of the first line, origin) of each, in order.
        self._origin_starts = origin_starts
        self._count: int | None = None

    @classmethod
    def packed(cls, source: str, data: bytes, first_line: int | None, first_offset: int | None,
               reference: datetime | None, origin: Any = None) -> LineRun:
        """Whole lines as they were in the file (each ending in \\n but perhaps the last); invalid UTF-8
        becomes U+FFFD. `first_offset` is None when the bytes are not the file's own (a transcoded
        UTF-16 export)."""
        return cls(source, None, reference, first_line=first_line, first_offset=first_offset, raw=data, origin=origin)

    @classmethod
    def of_lines(cls, source: str, lines: list[str], positions: list[SourcePosition], reference: datetime | None,
                 origins: list[Any] | None = None) -> LineRun:
        return cls(source, lines, reference, positions=positions, origins=origins)

    @classmethod
    def concatenated(cls, runs: list[LineRun]) -> LineRun:
        """Consecutive runs of one source as one (the stream joins the records of a batch this way,
        so a parser takes many lines at once). Packed runs that follow on from each other stay
        packed; otherwise every line keeps its own position."""
        if len(runs) == 1:
            return runs[0]
        reference = max((r.reference for r in runs if r.reference), default=None)
        first = runs[0]
        contiguous = cls._contiguous_bytes(runs)
        if contiguous is not None:
            starts, at = [], 0
            for run in runs:
                starts.append((at, run._origin))
                at += len(run)
            joined = cls(first.source, None, reference, first_line=first._first_line,
                         first_offset=first._first_offset, raw=b"".join(contiguous), origin_starts=starts)
            joined._count = at
            return joined
        lines, positions, origins = [], [], []
        for run in runs:
            lines += run.lines
            positions += [run.position(i) for i in range(len(run))]
            origins += [run.origin(i) for i in range(len(run))]
        return cls.of_lines(first.source, lines, positions, reference, origins)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            lines = self._packed_bytes().decode("utf-8", "replace").split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            self._lines = lines
        return self._lines

    def line(self, index: int) -> str:
        """One line; the first one of packed bytes without decoding the others."""
        if self._lines is None and index == 0:
            raw = self._packed_bytes()
            end = raw.find(b"\n")
            return (raw if end < 0 else raw[:end]).decode("utf-8", "replace")
        return self.lines[index]

    def __len__(self) -> int:
        if self._count is None:
            if self._lines is not None:
                self._count = len(self._lines)
            else:
                raw = self._packed_bytes()
                self._count = raw.count(b"\n") + (bool(raw) and not raw.endswith(b"\n"))
        return self._count

    def position(self, index: int) -> SourcePosition:
        if self._positions is not None:
            return self._positions[index]
        return SourcePosition(self.source, self.line_number(index), self._offset(index))

    def raw_bytes(self) -> bytes | None:
        """The bytes the lines were decoded from, when the run was packed."""
        return self._raw

    def line_number(self, index: int) -> int | None:
        if self._positions is not None:
            return self._positions[index].line
        return None if self._first_line is None else self._first_line + index

    def origin(self, index: int) -> Any:
        if self._origins is not None:
            return self._origins[index]
        if self._origin_starts is not None:
            return self._origin_starts[bisect_right(self._origin_starts, index, key=lambda start: start[0]) - 1][1]
        return self._origin

    def error(self, index: int, reason: str, field: str | None = None) -> ParseError:
        return ParseError(self.position(index), reason, field=field, raw=self.lines[index].rstrip("\r\n"),
                          origin=self.origin(index))

    def _packed_bytes(self) -> bytes:
        """The bytes of a run whose lines are not decoded yet (a run is built from one or the other)."""
        assert self._raw is not None, "a LineRun has its lines or its packed bytes"
        return self._raw

    def _offset(self, index: int) -> int | None:
        if self._first_offset is None or self._raw is None:
            return None
        if self._offsets is None:
            offsets, at = [], self._first_offset
            for chunk in self._raw.split(b"\n"):
                offsets.append(at)
                at += len(chunk) + 1
            self._offsets = offsets
        return self._offsets[index]

    @staticmethod
    def _contiguous_bytes(runs: list[LineRun]) -> list[bytes] | None:
        """The bytes of packed runs that each begin, in whole lines, where the one before ends (then they join
        as one packed run), or None."""
        contiguous: list[bytes] = []
        next_line: int | None = None
        next_offset: int | None = None
        for run in runs:
            raw, first_line, first_offset = run._raw, run._first_line, run._first_offset
            if raw is None or first_line is None or run._origin_starts is not None:
                return None
            if contiguous and not (first_line == next_line and (first_offset is None) == (next_offset is None)
                                   and (next_offset is None or first_offset == next_offset)
                                   and contiguous[-1].endswith(b"\n")):
                return None
            contiguous.append(raw)
            next_line = first_line + len(run)
            next_offset = None if first_offset is None else first_offset + len(raw)
        return contiguous


def too_long(length: int, max_line_bytes: int, what: str = "line") -> str:
    """Why a line was skipped, `length` bytes without its line end (or the record of one line it
    came in, unread)."""
    return f"{what} of {length} bytes is longer than formats.max_line_bytes ({max_line_bytes}); skipped"


def long_line(data: bytes, max_line_bytes: int, start: int = 0) -> tuple[int, int] | None:
    """Where the first line from `start` (where a line starts) on longer than `max_line_bytes` starts
    and ends (at its \\n, or the end of `data`), or None.

    It looks at windows of max_line_bytes + 1 bytes rather than at each line: the lines that start
    in a window before its last \\n end there, so none of them is too long."""
    at = start
    while len(data) - at > max_line_bytes:
        end = data.rfind(b"\n", at, at + max_line_bytes + 1)
        if end < 0:
            end = data.find(b"\n", at + max_line_bytes + 1)
            return at, len(data) if end < 0 else end
        at = end + 1
    return None


class Piece(NamedTuple):
    """Part of some bytes of whole lines: data[start:end], with `lines_before` lines before it; either
    lines of a fit length, or (`too_long`) one line without its line end."""

    start: int
    end: int
    lines_before: int
    too_long: bool


def cut_at_long_lines(data: bytes, max_line_bytes: int) -> Iterator[Piece]:
    """`data` in pieces, in order: its lines longer than `max_line_bytes`, and the runs of lines around them."""
    at = line = 0
    while (found := long_line(data, max_line_bytes, at)) is not None:
        start, end = found
        if start > at:
            yield Piece(at, start, line, False)
            line += data.count(b"\n", at, start)
        yield Piece(start, end, line, True)
        at, line = end + 1, line + 1
    if at < len(data):
        yield Piece(at, len(data), line, False)


def packed_runs(source: str, data: bytes, first_line: int, first_offset: int | None, reference: datetime | None,
                max_line_bytes: int, origin: Any = None) -> list[LineRun | ParseError]:
    """`LineRun.packed`, with each line longer than `max_line_bytes` taken out as an error at its
    position (the line is not in it): the runs around them, and the errors, in order."""
    out: list[LineRun | ParseError] = []
    for start, end, lines_before, too_long_line in cut_at_long_lines(data, max_line_bytes):
        line = first_line + lines_before
        offset = None if first_offset is None else first_offset + start
        if too_long_line:
            out.append(ParseError(SourcePosition(source, line, offset), too_long(end - start, max_line_bytes),
                                  origin=origin))
        else:  # data[0:len(data)] is data itself, not a copy: most records have no line too long
            out.append(LineRun.packed(source, data[start:end], line, offset, reference, origin))
    return out
