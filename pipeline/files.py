"""Reading log files: whole lines as bytes, a chunk at a time, with where each chunk starts.

`evaluate` reads files with it and the shipper tails them with it. UTF-16 exports (Exchange
Online's extended report) are decoded whole and handed on as UTF-8, without byte offsets, since
those would not be the file's own.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CHUNK_BYTES = 4 * 1024 * 1024


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
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def chunks(handle: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Every line of an open file, from its start to its end."""
    if handle.read(2) in UTF16_BOMS:
        handle.seek(0)
        yield transcoded(handle.read())
        return
    reader = LineReader(handle, 0, 0)
    while chunk := reader.read(chunk_bytes, final=True):
        yield chunk


def chunks_of_bytes(data: bytes) -> Iterator[Chunk]:
    """The same for data already in memory (standard input)."""
    return chunks(io.BytesIO(data))


def transcoded(data: bytes) -> Chunk:
    lines = data.decode("utf-16").splitlines()
    return Chunk("".join(line + "\n" for line in lines).encode("utf-8"), 1, None, len(lines))


class LineReader:
    """Reads whole lines from a file that may still be growing: a line counts once its line end
    is written, or, when `final` says the writer is done, at the end of the file."""

    def __init__(self, handle: BinaryIO, offset: int, line: int):
        self.handle, self.offset, self.line = handle, offset, line
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
        chunk = Chunk(data, self.line + 1, self.offset, count)
        self.offset += len(data)
        self.line += count
        return chunk
