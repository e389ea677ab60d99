"""Reading log files: whole lines as bytes, a chunk at a time, with where each chunk starts.

`evaluate` reads files with it and the shipper tails them with it. UTF-16 exports (Exchange
Online's extended report) are decoded whole and handed on as UTF-8, without byte offsets, since
those would not be the file's own. Rotated logs compressed with gzip, bzip2 or xz (known by their
first bytes, whatever their name) are decompressed as they are read, also without byte offsets.

A line longer than `formats.max_line_bytes` (a binary file given by mistake) is never held: its
bytes are counted and dropped up to its line end, and it comes out as a LongLine in its place.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from pipeline.domain.config import MAX_LINE_BYTES
from pipeline.domain.events import ParseError, SourcePosition
from pipeline.domain.lines import cut_at_long_lines, long_line, too_long

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CHUNK_BYTES = 4 * 1024 * 1024

# What a damaged or cut compressed file raises, depending on the format and where it breaks.
_DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)


class DamagedFile(OSError):
    """Compressed data that cannot be read on (cut short, or corrupt); the lines before it were read."""


class Readable(Protocol):
    """What lines are read from: an open binary file, or the decompressed data of one (Decompressing)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, /) -> int: ...


@dataclass(frozen=True)
class Chunk:
    """Whole lines of a file (`data` ends with a line end unless it is the end of the file)."""

    data: bytes
    first_line: int
    first_offset: int | None
    lines: int


@dataclass(frozen=True)
class LongLine:
    """A line longer than the readers' `max_line_bytes`, skipped: where it started (`offset` as in
    Chunk) and its `length` without its line end."""

    line: int
    offset: int | None
    length: int

    def error(self, source: str, max_line_bytes: int) -> ParseError:
        return ParseError(SourcePosition(source, self.line, self.offset), too_long(self.length, max_line_bytes))


def expand(paths: list[str]) -> list[Path]:
    """Files, and every file below the folders, in a stable order."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def chunks(handle: BinaryIO, chunk_bytes: int = CHUNK_BYTES,
           max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Chunk | LongLine]:
    """Every line of an open file, from its start to its end (decompressed, see `decompressing`).
    Damaged compressed data raises DamagedFile once the lines before it were handed out."""
    stream = decompressing(handle)
    readable: Readable = stream or handle
    try:
        if readable.read(2) in UTF16_BOMS:
            readable.seek(0)
            yield from transcoded(readable.read(), max_line_bytes)
            return
        reader = LineReader(readable, 0, 0, file_offsets=stream is None, max_line_bytes=max_line_bytes)
        while piece := reader.read(chunk_bytes, final=True):
            yield piece
    finally:
        if stream is not None:
            stream.close()


def chunks_of_bytes(data: bytes, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Chunk | LongLine]:
    """The same for data already in memory (standard input)."""
    return chunks(io.BytesIO(data), max_line_bytes=max_line_bytes)


def decompressing(handle: BinaryIO) -> Decompressing | None:
    """The decompressed bytes of an open file that starts as gzip, bzip2 or xz data do, else None;
    either way the file is left at its start. The stream is read as it goes, never whole; closing it
    leaves the file open."""
    handle.seek(0)
    start = handle.read(6)
    handle.seek(0)
    if start[:2] == b"\x1f\x8b":
        return Decompressing(gzip.GzipFile(fileobj=handle, mode="rb"), "gzip")
    if start[:3] == b"BZh" and start[3:4].isdigit():
        return Decompressing(bz2.BZ2File(handle), "bzip2")
    if start == b"\xfd7zXZ\x00":
        return Decompressing(lzma.LZMAFile(handle), "xz")
    return None


class Decompressing:
    """A decompressed stream (read, readline, seek: forward seeks decompress and skip) whose damage
    is raised as DamagedFile, whatever the format's own exception. A read that meets the damage
    returns what came before it, and the next read raises."""

    PIECE_BYTES = 64 * 1024

    def __init__(self, stream: io.BufferedIOBase, kind: str):
        self.stream, self.kind = stream, kind
        self.damage: DamagedFile | None = None

    def read(self, size: int = -1) -> bytes:
        if self.damage is not None:
            raise self.damage
        pieces, wanted = [], size
        try:
            while wanted != 0:
                piece = self.stream.read(self.PIECE_BYTES if wanted < 0 else min(wanted, self.PIECE_BYTES))
                if not piece:
                    break
                pieces.append(piece)
                wanted = wanted - len(piece) if wanted > 0 else wanted
        except _DECOMPRESSION_ERRORS as exc:
            self.damage = self._damaged(exc)
            if not pieces:
                raise self.damage from exc
        return b"".join(pieces)

    def readline(self, size: int = -1) -> bytes:
        if self.damage is not None:
            raise self.damage
        try:
            return self.stream.readline(size)
        except _DECOMPRESSION_ERRORS as exc:
            raise self._damaged(exc) from exc

    def seek(self, offset: int) -> int:
        try:
            return self.stream.seek(offset)
        except _DECOMPRESSION_ERRORS as exc:
            raise self._damaged(exc) from exc

    def close(self) -> None:
        self.stream.close()

    def _damaged(self, exc: Exception) -> DamagedFile:
        return DamagedFile(f"the {self.kind} data is damaged or cut short: {exc}")


def transcoded(data: bytes, max_line_bytes: int = MAX_LINE_BYTES) -> list[Chunk | LongLine]:
    """A UTF-16 file's lines in UTF-8: one chunk, or, around lines too long, several."""
    utf8 = "".join(line + "\n" for line in data.decode("utf-16").splitlines()).encode("utf-8")
    pieces: list[Chunk | LongLine] = []
    for start, end, lines_before, skipped in cut_at_long_lines(utf8, max_line_bytes):
        if skipped:
            pieces.append(LongLine(1 + lines_before, None, end - start))
        else:
            pieces.append(Chunk(utf8[start:end], 1 + lines_before, None, utf8.count(b"\n", start, end)))
    return pieces or [Chunk(b"", 1, None, 0)]


class LineReader:
    """Reads whole lines from a file that may still be growing: a line counts once its line end
    is written, or, when `final` says the writer is done, at the end of the file.

    `offset` and `line` count what was handed out; the chunks carry the offset only when it is the
    file's own (`file_offsets`: not for decompressed data). Bytes read past them (the start of a line
    whose end is not written yet, or of the lines after a line too long) are held for the next read
    rather than read again: going back in decompressed data means decompressing it from its start.
    A line longer than `max_line_bytes` is dropped as it is read, `skipped` counting its bytes, and
    handed out as a LongLine once its end is read; until then `offset` stays at its start."""

    def __init__(self, handle: Readable, offset: int, line: int, file_offsets: bool = True,
                 max_line_bytes: int = MAX_LINE_BYTES):
        self.handle, self.offset, self.line, self.file_offsets = handle, offset, line, file_offsets
        self.max_line_bytes = max_line_bytes
        self.held = b""
        self.skipped: int | None = None
        handle.seek(offset)

    def read(self, limit_bytes: int, final: bool) -> Chunk | LongLine | None:
        """About `limit_bytes` of whole lines (a line the limit cuts comes whole), or a line too long
        (LongLine), or None."""
        if self.skipped is not None:
            return self._skip(limit_bytes, final)
        data = self.held + self.handle.read(max(0, limit_bytes - len(self.held)))
        self.held = b""
        if len(data) >= limit_bytes and not data.endswith(b"\n"):
            # The rest of the line the limit cuts, up to one byte more than a line may have.
            wanted = self.max_line_bytes + 1 - (len(data) - data.rfind(b"\n") - 1)
            if wanted > 0:
                data += self.handle.readline(wanted)
        found = long_line(data, self.max_line_bytes)
        if found is not None:
            start, end = found
            if start > 0:
                data, self.held = data[:start], data[start:]  # the lines before it first
            elif end < len(data):
                self.held = data[end + 1:]
                return self._skipped_line(end, line_end=1)
            else:
                self.skipped = len(data)
                return self._skip(limit_bytes, final)
        elif not (final or data.endswith(b"\n")):
            whole = data.rfind(b"\n") + 1
            data, self.held = data[:whole], data[whole:]  # the writer is still on the last line
        if not data:
            return None
        count = data.count(b"\n") + (not data.endswith(b"\n"))
        chunk = Chunk(data, self.line + 1, self.offset if self.file_offsets else None, count)
        self.offset += len(data)
        self.line += count
        return chunk

    def _skip(self, piece_bytes: int, final: bool) -> LongLine | None:
        """Drops the line too long up to its end, a piece at a time: the LongLine once the end was
        read (the end of the file when `final`), else None."""
        assert self.skipped is not None, "only while a line too long is dropped"
        while piece := self.handle.read(piece_bytes):
            end = piece.find(b"\n")
            if end >= 0:
                self.held = piece[end + 1:]
                return self._skipped_line(self.skipped + end, line_end=1)
            self.skipped += len(piece)
        return self._skipped_line(self.skipped, line_end=0) if final else None

    def _skipped_line(self, length: int, line_end: int) -> LongLine:
        skipped = LongLine(self.line + 1, self.offset if self.file_offsets else None, length)
        self.offset += length + line_end
        self.line += 1
        self.skipped = None
        return skipped
