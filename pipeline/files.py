"""Reading log files: whole lines as bytes, a chunk at a time, with where each chunk starts.

`evaluate` reads files with it and the shipper tails them with it. UTF-16 exports (Exchange
Online's extended report) are decoded whole and handed on as UTF-8, without byte offsets, since
those would not be the file's own. Rotated logs compressed with gzip, bzip2 or xz (known by their
first bytes, whatever their name) are decompressed as they are read, also without byte offsets.
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

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CHUNK_BYTES = 4 * 1024 * 1024

# What a damaged or cut compressed file raises, depending on the format and where it breaks.
_DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)


class DamagedFile(OSError):
    """Compressed data that cannot be read on (cut short, or corrupt); the lines before it were read."""


class Readable(Protocol):
    """What lines are read from: an open binary file, or the decompressed data of one (Decompressing)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self) -> bytes: ...

    def seek(self, offset: int, /) -> int: ...


@dataclass(frozen=True)
class Chunk:
    """Whole lines of a file (`data` ends with a line end unless it is the end of the file)."""

    data: bytes
    first_line: int
    first_offset: int | None
    lines: int


def expand(paths: list[str]) -> list[Path]:
    """Files, and every file below the folders, in a stable order."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def modified(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def chunks(handle: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Every line of an open file, from its start to its end (decompressed, see `decompressing`).
    Damaged compressed data raises DamagedFile once the lines before it were handed out."""
    stream = decompressing(handle)
    readable: Readable = stream or handle
    try:
        if readable.read(2) in UTF16_BOMS:
            readable.seek(0)
            yield transcoded(readable.read())
            return
        reader = LineReader(readable, 0, 0, file_offsets=stream is None)
        while chunk := reader.read(chunk_bytes, final=True):
            yield chunk
    finally:
        if stream is not None:
            stream.close()


def chunks_of_bytes(data: bytes) -> Iterator[Chunk]:
    """The same for data already in memory (standard input)."""
    return chunks(io.BytesIO(data))


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

    def readline(self) -> bytes:
        if self.damage is not None:
            raise self.damage
        try:
            return self.stream.readline()
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


def transcoded(data: bytes) -> Chunk:
    lines = data.decode("utf-16").splitlines()
    return Chunk("".join(line + "\n" for line in lines).encode("utf-8"), 1, None, len(lines))


class LineReader:
    """Reads whole lines from a file that may still be growing: a line counts once its line end
    is written, or, when `final` says the writer is done, at the end of the file.

    `offset` counts the bytes read; the chunks carry it only when it is the file's own
    (`file_offsets`: not for decompressed data)."""

    def __init__(self, handle: Readable, offset: int, line: int, file_offsets: bool = True):
        self.handle, self.offset, self.line, self.file_offsets = handle, offset, line, file_offsets
        handle.seek(offset)

    def read(self, limit_bytes: int, final: bool) -> Chunk | None:
        """About `limit_bytes` of whole lines (a line the limit cuts comes whole), or None."""
        data = self.handle.read(limit_bytes)
        if len(data) == limit_bytes:
            data += self.handle.readline()
        if not (final or data.endswith(b"\n")):
            data = data[:data.rfind(b"\n") + 1]  # the writer is still on the last line
            self.handle.seek(self.offset + len(data))
        if not data:
            return None
        count = data.count(b"\n") + (not data.endswith(b"\n"))
        chunk = Chunk(data, self.line + 1, self.offset if self.file_offsets else None, count)
        self.offset += len(data)
        self.line += count
        return chunk
