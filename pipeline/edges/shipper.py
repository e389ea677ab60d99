"""`patchgate ship`: send log files line by line to mail.logs.raw with kafka-python, losing nothing.

Each line travels in the JSON envelope Filebeat-style shippers use (`message` plus where it came
from), keyed by the file's identity (its absolute path) so one file's lines stay in order on one
partition. A checkpoint (path -> inode, byte offset, line number) is written only after the broker
acknowledged every line before it, so a restart neither loses nor repeats lines.

With --follow the files are tailed like `tail -F`: a renamed (rotated) file is read to its end
before the new file at the same path is opened, a truncated file is read again from the start,
and a line is sent only once its newline has been written.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

from kafka import KafkaProducer

from pipeline.settings import Settings
from pipeline.streaming import topics

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
BATCH_LINES = 5_000
POLL_SECONDS = 0.5


def lines_with_positions(path: Path) -> Iterator[tuple[int, int | None, str]]:
    """(line number, byte offset, text) for every line of a file."""
    return lines_of_text(path.read_bytes())


def lines_of_text(data: bytes) -> Iterator[tuple[int, int | None, str]]:
    """(line number, byte offset, text) for every line; UTF-16 exports are decoded whole (no offsets)."""
    if data[:2] in _UTF16_BOMS:
        text = data.decode("utf-16")
        for number, line in enumerate(text.splitlines(), start=1):
            yield number, None, line
        return
    offset = 0
    for number, chunk in enumerate(data.splitlines(keepends=True), start=1):
        yield number, offset, chunk.decode("utf-8", errors="replace").rstrip("\r\n")
        offset += len(chunk)


def expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


@dataclass
class Position:
    """How far a file has been shipped and acknowledged."""

    inode: int
    offset: int = 0
    line: int = 0


class Checkpoint:
    """path -> Position, saved atomically (write, fsync, rename) after each acknowledged batch."""

    def __init__(self, path: Path | None):
        self.path = path
        self.positions: dict[str, Position] = {}
        if path and path.exists():
            self.positions = {k: Position(**v) for k, v in json.loads(path.read_text()).items()}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w") as handle:
            json.dump({k: vars(v) for k, v in self.positions.items()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)


class OpenFile:
    """A file being read: the handle, and how far it was read (number, byte offset of the next line)."""

    def __init__(self, path: Path, start: Position | None):
        self.handle = path.open("rb")
        stat = os.fstat(self.handle.fileno())
        self.inode = stat.st_ino
        if start is not None and start.inode == self.inode and start.offset <= stat.st_size:
            self.offset, self.line = start.offset, start.line
        else:
            self.offset, self.line = 0, 0
        self.handle.seek(self.offset)
        self.utf16 = self.offset == 0 and self.handle.read(2) in _UTF16_BOMS
        self.handle.seek(self.offset)

    def read(self, limit: int, final: bool) -> list[tuple[int, int | None, str]]:
        """Up to `limit` complete lines; a last line without its newline only when `final`."""
        if self.utf16:
            # Exports in UTF-16 are written once, not appended to: decode the whole rest at once.
            data = self.handle.read()
            self.offset += len(data)
            lines = [(self.line + n, None, text) for n, _, text in lines_of_text(data)]
            self.line += len(lines)
            return lines
        lines = []
        while len(lines) < limit:
            chunk = self.handle.readline()
            if not chunk:
                break
            if not chunk.endswith(b"\n") and not final:
                self.handle.seek(self.offset)  # the writer is still on this line
                break
            self.line += 1
            lines.append((self.line, self.offset, chunk.decode("utf-8", errors="replace").rstrip("\r\n")))
            self.offset += len(chunk)
        return lines

    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    def close(self) -> None:
        self.handle.close()


class Shipper:
    def __init__(self, settings: Settings, checkpoint: Checkpoint, progress: TextIO | None = None):
        self.topic = settings.topic(topics.RAW)
        self.checkpoint = checkpoint
        self.progress = progress
        self.producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20,
            compression_type="gzip", batch_size=256 * 1024, retries=10,
        )
        self.open: dict[str, OpenFile] = {}
        self.sent = 0
        self._started = time.monotonic()
        self._last_report = 0.0

    def run(self, paths: list[str], follow: bool, stop: Callable[[], bool] = lambda: False) -> int:
        try:
            while True:
                for path in expand(paths):
                    self._ship_path(path, final=not follow)
                self._report(force=not follow)
                if not follow or stop():
                    return self.sent
                time.sleep(POLL_SECONDS)
        finally:
            self.producer.close()
            for handle in self.open.values():
                handle.close()

    def _ship_path(self, path: Path, final: bool) -> None:
        identity = str(path.resolve())
        current = self.open.get(identity)
        if current is None:
            saved = self.checkpoint.positions.get(identity)
            if saved is not None:
                self._finish_rotated_away(path, identity, saved)
            try:
                current = self.open[identity] = OpenFile(path, self.checkpoint.positions.get(identity))
            except FileNotFoundError:
                return
        self._drain(identity, current, final)
        try:
            now = path.stat()
        except FileNotFoundError:
            return
        if now.st_ino != current.inode:
            # Rotated: the old file was read to its end above (with its last line, final=True).
            self._drain(identity, current, final=True)
            current.close()
            current = self.open[identity] = OpenFile(path, None)
            self._drain(identity, current, final)
        elif now.st_size < current.offset:
            current.close()
            current = self.open[identity] = OpenFile(path, None)
            self._drain(identity, current, final)

    def _finish_rotated_away(self, path: Path, identity: str, saved: Position) -> None:
        """Rotated while we were not running: finish the old file if it is still beside the new one."""
        try:
            if path.stat().st_ino == saved.inode:
                return
        except FileNotFoundError:
            pass
        for sibling in path.parent.glob(path.name + "*"):
            if sibling.is_file() and sibling.stat().st_ino == saved.inode:
                old = OpenFile(sibling, saved)
                self._drain(identity, old, final=True)
                old.close()
                return

    def _drain(self, identity: str, current: OpenFile, final: bool) -> None:
        key = identity.encode("utf-8")
        while True:
            lines = current.read(BATCH_LINES, final)
            if not lines:
                return
            failures: list[Exception] = []
            for number, offset, text in lines:
                envelope = {"message": text, "file": identity, "line": number, "offset": offset}
                future = self.producer.send(self.topic, key=key, value=json.dumps(envelope).encode("utf-8"))
                future.add_errback(failures.append)
            self.producer.flush()
            if failures:
                raise RuntimeError(f"the broker did not take lines of {identity}: {failures[0]}")
            # Only now, with every line acknowledged, does the checkpoint move.
            self.checkpoint.positions[identity] = Position(current.inode, current.offset, current.line)
            self.checkpoint.save()
            self.sent += len(lines)
            self._report()

    def _report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < 1.0:
            return
        self._last_report = now
        behind = sum(max(0, f.size() - f.offset) for f in self.open.values())
        rate = self.sent / max(now - self._started, 1e-6)
        end = "\n" if force else ""
        print(f"\rshipped {self.sent:,} lines, {rate:,.0f} lines/s, {behind:,} bytes behind", end=end,
              file=self.progress, flush=True)


def ship(settings: Settings, paths: list[str], follow: bool = False, checkpoint: Path | None = None,
         progress: TextIO | None = None, stop: Callable[[], bool] = lambda: False) -> int:
    """Send every line of the files (and, following, every line written later); return how many."""
    return Shipper(settings, Checkpoint(checkpoint), progress).run(paths, follow, stop)


def progress_stream() -> TextIO | None:
    return sys.stderr if sys.stderr.isatty() else None
