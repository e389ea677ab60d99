"""`patchgate ship`: send log files to mail.logs.raw with kafka-python, losing nothing.

Lines travel packed, up to 256 KiB of whole lines per record (pipeline.contracts.packing), keyed by
the file's identity (its absolute path) so one file's lines stay in order on one partition. A
checkpoint (path -> inode, byte offset, line number) is written only after the broker acknowledged
every line before it, so a restart neither loses nor repeats lines.

With --follow the files are tailed like `tail -F`: a renamed (rotated) file is read to its end
before the new file at the same path is opened, a truncated file is read again from the start,
and a line is sent only once its newline has been written.

A compressed file (gzip, bzip2, xz: a rotated log) is complete and never appended to: it is read
once to its end and never tailed. Its checkpoint counts decompressed bytes and lines (a restart
part way decompresses up to there again) and, once it was read to its end, marks it done, so a
restart does not decompress it at all. Data cut short (logrotate still compressing it, say) is
tried again from the last whole line on the next pass.

When the broker does not take lines (it is down, or a restarted broker has not elected a partition's
leader yet), the producer retries by itself for a while; what it gives up on, the shipper sends
again from the last line the broker took, as a restart would, after a pause that grows to at most
BACKOFF_MAX_S. Only an error Kafka marks as not retriable ends the shipping.

A record the producer reports failed may have been written all the same: a broker stopping wrote it
and closed the connection before answering, or its answer came after the delivery timeout. So
before sending again, the shipper reads the topic back from the first unconfirmed record's send
time and goes on after the records of that source found there (by first line, first byte and
checksum), rather than writing them twice.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from pipeline import kafka_clients
from pipeline.atomic_write import write_atomically
from pipeline.contracts import packing, topics
from pipeline.domain.config import MAX_LINE_BYTES
from pipeline.edges import RECONNECT_BACKOFF_MAX_MS
from pipeline.files import UTF16_BOMS, Chunk, DamagedFile, LineReader, LongLine, decompressing, expand, transcoded
from pipeline.settings import Settings
from pipeline.topic_reading import records_to_end

# A file being tailed is looked at this often: it bounds how long a written line waits.
POLL_SECONDS = 0.1
# Lines sent between two waits for the broker's acknowledgement (and checkpoint saves).
FLUSH_LINES = 200_000
# How long the producer itself keeps resending a record before it reports it failed: long enough
# for a partition leader election, short enough that an outage shows in the log. It must exceed
# a request's timeout (and linger_ms): a request unanswered that long is sent again.
DELIVERY_TIMEOUT_MS = 60_000
REQUEST_TIMEOUT_MS = 20_000
# Pauses between two attempts to send what the broker did not take: doubling, up to the maximum.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 5.0
# Reading the topic back after a failure starts this long before the first unconfirmed send: the
# broker keeps the producer's timestamp (CreateTime), so this only covers rounding.
READ_BACK_MARGIN_MS = 1_000
READ_BACK_TIMEOUT_S = 30.0
READ_BACK_BOOTSTRAP_MS = 3_000


@dataclass
class Position:
    """How far a file has been shipped and acknowledged (`done`: a compressed file, to its end, and
    `size` its size then: logrotate renames it on, mail.log.2.gz to mail.log.3.gz, and the same
    inode and size under another name is the same file)."""

    inode: int
    offset: int = 0
    line: int = 0
    done: bool = False
    size: int = 0


class Checkpoint:
    """path -> Position, saved whole (atomic_write) after each acknowledged batch."""

    def __init__(self, path: Path | None):
        self.path = path
        self.positions: dict[str, Position] = {}
        if path and path.exists():
            self.positions = {k: Position(**v) for k, v in json.loads(path.read_text()).items()}

    def finished(self, path: Path) -> Position | None:
        """The position of a compressed file shipped to its end under another name, if `path` is it."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return next((p for p in self.positions.values()
                     if p.done and p.inode == stat.st_ino and p.size == stat.st_size), None)

    def save(self) -> None:
        if self.path is None:
            return
        write_atomically(self.path, json.dumps({k: vars(v) for k, v in self.positions.items()}))


class OpenFile:
    """A file being read: the handle, and how far it was read (line number, byte offset; for a
    compressed file, of its decompressed data). What the file is shows in its first bytes, which a
    new file may not have yet: they are looked at until something was read. A compressed file read
    to its end is closed: it has nothing more. `real_path` is where the file is (see `opened_path`)."""

    def __init__(self, path: Path, start: Position | None, max_line_bytes: int = MAX_LINE_BYTES):
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.handle = path.open("rb")
        self.real_path = opened_path(self.handle, path)
        stat = os.fstat(self.handle.fileno())
        self.inode = stat.st_ino
        self.stream = decompressing(self.handle)
        self.compressed = self.stream is not None
        if start is not None and start.inode == self.inode and (self.compressed or start.offset <= stat.st_size):
            self.start = start
        else:
            self.start = Position(self.inode)
        self.done = self.start.done
        self.reader: LineReader | None = None
        self.utf16 = False
        # Damaged compressed data, and the file's size then: it is tried again once the size changes.
        self.damage: DamagedFile | None = None
        self.damaged_size = 0
        if self.done:
            self.close()

    @property
    def offset(self) -> int:
        return self.reader.offset if self.reader else self.start.offset

    @property
    def line(self) -> int:
        return self.reader.line if self.reader else self.start.line

    def position(self) -> Position:
        if self.done:
            return self.start  # closed by now: its size was taken when it was done
        return Position(self.inode, self.offset, self.line)

    def read(self, final: bool) -> Iterator[Chunk | LongLine]:
        """Records' worth of complete lines, and lines too long (skipped); a last line without its
        line end only when `final` (or the file is compressed). Damaged compressed data ends the
        reading, kept in `damage`: a read after the file changed starts again after the last whole line."""
        if self.done or (self.damage is not None and self._size() == self.damaged_size):
            return
        reader = self.reader
        if reader is None or (self.offset == 0 and not self.compressed and reader.skipped is None):
            reader = self._open_reader()
        if not self.compressed:
            yield from self._read(reader, final)
            return
        try:
            yield from self._read(reader, final=True)
        except DamagedFile as exc:
            self.damage, self.damaged_size = exc, self._size()
            self.start, self.reader = self.position(), None
            assert self.stream is not None, "only the decompressing stream raises DamagedFile"
            self.stream.close()
            self.stream = decompressing(self.handle)
            return
        self.done = True
        self.start = Position(self.inode, self.offset, self.line, True, self._size())
        self.reader, self.damage = None, None
        self.close()

    def _open_reader(self) -> LineReader:
        """A reader from the start position (of a compressed file: decompressing up to it)."""
        if self.stream is None:
            self.stream = decompressing(self.handle)
            self.compressed = self.stream is not None
        readable = self.stream or self.handle
        self.utf16 = self.start.offset == 0 and readable.read(2) in UTF16_BOMS
        self.reader = LineReader(readable, self.start.offset, self.start.line, file_offsets=not self.compressed,
                                 max_line_bytes=self.max_line_bytes)
        return self.reader

    def _read(self, reader: LineReader, final: bool) -> Iterator[Chunk | LongLine]:
        if self.utf16:
            # Exports in UTF-16 are written once, not appended to: decode the whole rest at once. Its
            # start and its end are the only places to resume from, so the position moves to the end
            # with the last record (a record not taken sends the file again from its start).
            data = reader.handle.read()
            parts = transcoded(data, self.max_line_bytes) if data else []
            pieces = [piece for part in parts for piece in (_pieces(part) if isinstance(part, Chunk) else [part])]
            for number, piece in enumerate(pieces, 1):
                if number == len(pieces):
                    reader.offset += len(data)
                    reader.line += sum(p.lines if isinstance(p, Chunk) else 1 for p in pieces)
                yield piece
            return
        while found := reader.read(packing.MAX_RECORD_BYTES, final):
            yield found

    def behind(self) -> int:
        """Bytes of the file not read yet (of a compressed file: compressed bytes)."""
        if self.done:
            return 0
        read = self.handle.tell() if self.compressed else self.offset
        return max(0, self._size() - read)

    def _size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.handle.close()


def opened_path(handle: BinaryIO, path: Path) -> Path:
    """Where the file opened from `path` is, whatever links led there: the kernel's own name for it
    (Linux), so that a link swapped in after `path` was resolved is caught."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{handle.fileno()}"))
    except OSError:  # no /proc
        return path.resolve()


def _pieces(chunk: Chunk) -> Iterator[Chunk]:
    """A transcoded file cut into records of whole lines (they carry no byte offsets)."""
    data, line = chunk.data, chunk.first_line
    while data:
        end = data.rfind(b"\n", 0, packing.MAX_RECORD_BYTES) + 1 or data.find(b"\n") + 1 or len(data)
        piece, data = data[:end], data[end:]
        count = piece.count(b"\n")
        yield Chunk(piece, line, None, count)
        line += count


@dataclass
class Sent:
    """A record given to the producer: its source, how many lines it holds, where the source stood
    before and after it, and, once the broker answered, the error if it did not take it. A record
    of no lines marks a position change alone (a compressed file read to its end). `mark` tells
    the record apart on the topic: its first line, first byte offset and the CRC-32 of its value;
    `sent_ms` is its timestamp."""

    source: str
    lines: int
    before: Position
    after: Position
    failure: Exception | None = None
    mark: tuple[int, int | None, int] | None = None
    sent_ms: int = 0

    def failed(self, failure: Exception) -> None:
        self.failure = failure


@dataclass
class Settled:
    """What the broker took of records sent: per source, the position after the last line it took
    with every line before it (`reached`), and the records from its first one not taken on
    (`unconfirmed`, to be read back from the topic before sending again); how many lines it took;
    the errors of the records it did not take."""

    reached: dict[str, Position]
    unconfirmed: dict[str, list[Sent]]
    lines: int
    failures: list[Exception]


def settle(records: list[Sent]) -> Settled:
    """Sort answered `records`, in the order they were sent, into what the broker took and what is
    unconfirmed. A source's records after its first one not taken are unconfirmed even if the broker
    took them: that keeps every source's lines in order."""
    settled = Settled({}, {}, 0, [])
    for record in records:
        if record.source in settled.unconfirmed:
            settled.unconfirmed[record.source].append(record)
        elif record.failure is None:
            settled.reached[record.source] = record.after
            settled.lines += record.lines
        else:
            settled.unconfirmed[record.source] = [record]
            settled.failures.append(record.failure)
    return settled


def written_prefix(records: list[Sent], on_topic: set[tuple[int, int | None, int]]) -> list[Sent]:
    """The leading `records` (unconfirmed, of one source, in the order sent) found on the topic:
    the broker wrote them though it did not say so. Sending goes on after them; a record found
    after one missing is sent again, to keep the source's lines in order."""
    written: list[Sent] = []
    for record in records:
        if record.mark is not None and record.mark not in on_topic:
            break
        written.append(record)
    return written


def read_back(settings: Settings, topic: str, since_ms: int, sources: set[str]) -> dict[str, set]:
    """The marks (first line, first byte, CRC-32 of the value) of the packed records of `sources`
    (their keys) on `topic` from `since_ms` on. KafkaError or TimeoutError when the broker cannot say."""
    # A broker still down is said within seconds (the default waits 30 s), and tried again later.
    consumer = kafka_clients.consumer(settings, bootstrap_timeout_ms=READ_BACK_BOOTSTRAP_MS)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise KafkaError(f"no metadata for {topic} yet")
        starts = consumer.offsets_for_times({TopicPartition(topic, p): since_ms for p in partitions})
        # Only partitions with a record from `since_ms` on: the others have nothing to read back.
        wanted = sorted(tp for tp, found in starts.items() if found is not None)
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, starts[tp].offset)
        marks: dict[str, set] = {source: set() for source in sources}
        for message in records_to_end(consumer, wanted, READ_BACK_TIMEOUT_S):
            source = (message.key or b"").decode("utf-8", "replace")
            position = packing.packed_position(message.headers)
            if source in marks and position is not None:
                marks[source].add((*position, zlib.crc32(message.value or b"")))
        return marks
    finally:
        consumer.close()


def retriable(failure: Exception) -> bool:
    """Whether Kafka says the error may pass if the same is sent again (no leader yet, timed out)."""
    return bool(getattr(failure, "retriable", False))


def backoff_seconds(attempt: int) -> float:
    """The pause before the `attempt`th try (from 1) to send again what the broker did not take."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (attempt - 1))


class BrokerUnavailable(Exception):
    """The broker did not take some lines, for a reason that may pass: they are to be sent again."""


class Shipper:
    def __init__(self, settings: Settings, checkpoint: Checkpoint, progress: TextIO | None = None):
        self.topic = settings.topic(topics.RAW)
        self.settings = settings
        self.checkpoint = checkpoint
        self.progress = progress
        # Made when lines are to be sent (`_connect`), again after a failure.
        self.producer: KafkaProducer | None = None
        self.open: dict[str, OpenFile] = {}
        self.max_line_bytes = settings.formats.max_line_bytes
        # The paths given, resolved at each look (see `_within`), and the links refused, said once.
        self.roots: list[Path] = []
        self.refused: set[tuple[Path, Path]] = set()
        self.sent = 0
        # Sent and not yet acknowledged: the records in the order sent, and how many lines they hold.
        self._pending: list[Sent] = []
        self._unacknowledged = 0
        # Per source, the records the broker did not confirm, to read back before sending again.
        self._unconfirmed: dict[str, list[Sent]] = {}
        # While the broker does not take lines: when that began, and how many tries since.
        self._outage_since: float | None = None
        self._attempts = 0
        self._started = time.monotonic()
        self._last_report = 0.0

    def _connect(self) -> KafkaProducer:
        """The producer, made before any file is read: a broker that does not answer makes no line wait."""
        if self.producer is not None:
            return self.producer
        try:
            self.producer = kafka_clients.producer(
                self.settings, acks="all", linger_ms=20,
                compression_type="lz4", batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024,
                # Retried by the producer until the delivery timeout, in order: a partition's next batch
                # waits for the one before. Idempotent, so that a batch the broker wrote but did not
                # confirm (its leader failed between replicating and answering: kill -9, a frozen or
                # restarted broker) is not written again by the retry. kafka-python 3.0 never sends again
                # once a batch of its producer id expired: after a failure the shipper takes a new
                # producer (_acknowledged), and reads back what the old one wrote.
                retries=2**31 - 1, delivery_timeout_ms=DELIVERY_TIMEOUT_MS, request_timeout_ms=REQUEST_TIMEOUT_MS,
                enable_idempotence=True, max_in_flight_requests_per_connection=1,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
        except KafkaError as exc:  # no broker answered within its bootstrap timeout
            raise BrokerUnavailable(exc) from exc
        return self.producer

    def run(self, paths: list[str], follow: bool, stop: Callable[[], bool] = lambda: False) -> int:
        try:
            while True:
                try:
                    self._read_back_unconfirmed()
                    self._connect()
                    self.roots = [Path(name).resolve() for name in paths]
                    for path in expand(paths):
                        self._ship_path(path, final=not follow)
                    self._acknowledged()
                except BrokerUnavailable as exc:
                    self._wait_for_broker(exc)
                    if stop():
                        return self.sent
                    continue
                self._broker_back()
                self._report(force=not follow)
                if not follow or stop():
                    return self.sent
                time.sleep(POLL_SECONDS)
        finally:
            if self.producer is not None:
                self.producer.close()
            for handle in self.open.values():
                handle.close()

    def _ship_path(self, path: Path, final: bool) -> None:
        resolved = path.resolve()
        if not self._within(path, resolved):
            return
        identity = str(resolved)
        current = self.open.get(identity)
        if current is None:
            saved = self.checkpoint.positions.get(identity)
            if saved is not None:
                self._finish_rotated_away(path, identity, saved)
            else:
                saved = self.checkpoint.finished(path)
                if saved is not None:
                    self.checkpoint.positions[identity] = saved
            current = self._open(path, identity, self.checkpoint.positions.get(identity))
            if current is None:
                return
        self._drain(identity, current, final)
        try:
            now = path.stat()
        except FileNotFoundError:
            return
        if now.st_ino != current.inode:
            # Rotated: the old file was read to its end above (with its last line, final=True).
            self._drain(identity, current, final=True)
        elif current.compressed or now.st_size >= current.offset:
            return
        # Rotated, or truncated: the new file from its start.
        current.close()
        current = self._open(path, identity, None)
        if current is not None:
            self._drain(identity, current, final)

    def _within(self, path: Path, target: Path) -> bool:
        """Whether `target`, where `path` leads, is the file in `path`'s folder (no link) or lies under
        one of the paths given (resolved at each look): a symbolic link planted in a log folder must
        not ship whatever the shipper can read. A file refused is said once on stderr."""
        if target == path.parent.resolve() / path.name or any(target.is_relative_to(root) for root in self.roots):
            return True
        if (path, target) not in self.refused:
            self.refused.add((path, target))
            print(f"{path}: not shipped: it leads to {target}, outside the paths given "
                  f"({', '.join(map(str, self.roots))})", file=sys.stderr, flush=True)
        return False

    def _open(self, path: Path, identity: str | None, start: Position | None) -> OpenFile | None:
        """The file at `path`, opened (kept as `identity`'s file, if given); None when it is gone, or
        when what was opened lies outside the paths given after all: a link put in its place since
        `path` was resolved."""
        if identity is not None:
            self.open.pop(identity, None)
        try:
            opened = OpenFile(path, start, self.max_line_bytes)
        except FileNotFoundError:
            return None
        if not self._within(path, opened.real_path):
            opened.close()
            return None
        if identity is not None:
            self.open[identity] = opened
        return opened

    def _finish_rotated_away(self, path: Path, identity: str, saved: Position) -> None:
        """Rotated while we were not running: finish the old file if it is still beside the new one."""
        try:
            if path.stat().st_ino == saved.inode:
                return
        except FileNotFoundError:
            pass
        # Escaped: a file name is no pattern (mail[1].log rotates to mail[1].log.1, not mail1.log.1).
        for sibling in path.parent.glob(glob.escape(path.name) + "*"):
            if sibling.is_file() and sibling.stat().st_ino == saved.inode:
                old = self._open(sibling, None, saved)
                if old is None:
                    return
                try:
                    self._drain(identity, old, final=True)
                finally:
                    old.close()
                return

    def _drain(self, identity: str, current: OpenFile, final: bool) -> None:
        producer = self._connect()
        # The bytes of the file's name as the file system has them: a name need not be UTF-8.
        key = identity.encode("utf-8", "surrogateescape")
        was_done, was_damaged = current.done, current.damage is not None
        before = current.position()
        for chunk in current.read(final):
            if isinstance(chunk, LongLine):
                # Not sent: the checkpoint moves past it with the records around it.
                print(chunk.error(str(current.path), current.max_line_bytes), file=sys.stderr, flush=True)
                self._pending.append(Sent(identity, 0, before, current.position()))
                before = current.position()
                continue
            record = Sent(identity, chunk.lines, before, current.position(),
                          mark=(chunk.first_line, chunk.first_offset, zlib.crc32(chunk.data)),
                          sent_ms=int(time.time() * 1000))
            self._pending.append(record)
            self._unacknowledged += chunk.lines
            try:
                future = producer.send(self.topic, key=key, value=chunk.data, timestamp_ms=record.sent_ms,
                                       headers=packing.headers(chunk.first_line, chunk.first_offset))
            except KafkaError as exc:  # no leader known within max_block_ms, say
                record.failed(exc)
                self._acknowledged()  # raises: settles the records before this one, sends again from it
            else:
                future.add_errback(record.failed)
            before = record.after
            if self._outage_since is not None:
                # After an outage, one record at a time until the broker takes one: a record that
                # expires (still connecting) while a later one of its source gets through would
                # have the later one sent again, repeating its lines.
                self._acknowledged()
                self._broker_back()
            elif self._unacknowledged >= FLUSH_LINES:
                self._acknowledged()
        if current.done and not was_done:
            self._pending.append(Sent(identity, 0, before, current.position()))
        if current.damage is not None and not was_damaged:
            # Not lost: the checkpoint stays before the damage (compression still running, a copy cut short).
            again = "a later run resumes there" if final else "read on from there once the file changes"
            print(f"{current.path}: {current.damage} (after line {current.line}); {again}", file=sys.stderr)

    def _acknowledged(self) -> None:
        """Wait until the broker has answered for every line sent; the checkpoint moves up to the
        lines it took. A source it did not take every line of is read again from the first line
        not taken: BrokerUnavailable says so, or RuntimeError when the error is not one to retry."""
        if not self._pending:
            return
        assert self.producer is not None, "records are pending, so a producer sent them"
        self.producer.flush()
        settled = settle(self._pending)
        self._pending.clear()
        self._unacknowledged = 0
        self.checkpoint.positions.update(settled.reached)
        if settled.reached:
            self.checkpoint.save()
        self.sent += settled.lines
        fatal = next((failure for failure in settled.failures if not retriable(failure)), None)
        if fatal is not None:
            raise RuntimeError(f"the broker did not take every line: {fatal!r}")
        if settled.failures:
            self.producer.close(timeout=5)
            self.producer = None
            # Every file is opened again at its checkpoint, as after a restart: a read broken off
            # here (a UTF-16 export half sent, say) is not left half done.
            for source, records in settled.unconfirmed.items():
                self.checkpoint.positions[source] = records[0].before
                self._unconfirmed.setdefault(source, []).extend(records)
            for reading in self.open.values():
                reading.close()
            self.open.clear()
            raise BrokerUnavailable(settled.failures[0])
        self._report()

    def _read_back_unconfirmed(self) -> None:
        """Move each source with unconfirmed records past those the broker wrote all the same
        (read back from the topic); BrokerUnavailable while the broker cannot say."""
        if not self._unconfirmed:
            return
        since = min(r.sent_ms for records in self._unconfirmed.values() for r in records) - READ_BACK_MARGIN_MS
        try:
            on_topic = read_back(self.settings, self.topic, since, set(self._unconfirmed))
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(exc) from exc
        for source, records in self._unconfirmed.items():
            written = written_prefix(records, on_topic[source])
            if written:
                self.checkpoint.positions[source] = written[-1].after
                lines = sum(record.lines for record in written)
                self.sent += lines
                print(f"{source}: {lines} lines the broker did not confirm are on {self.topic}: not sent again",
                      file=sys.stderr, flush=True)
        self.checkpoint.save()
        self._unconfirmed.clear()

    def _wait_for_broker(self, failure: BrokerUnavailable) -> None:
        """Pause before sending again; the first pause of an outage is said on stderr, once."""
        self._attempts += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            print(f"the broker did not take every line ({failure.args[0]!r}); sending again from the last "
                  f"line it took, every {BACKOFF_FIRST_S:g} to {BACKOFF_MAX_S:g} s", file=sys.stderr, flush=True)
        time.sleep(backoff_seconds(self._attempts))

    def _broker_back(self) -> None:
        if self._outage_since is None:
            return
        print(f"the broker takes lines again, after {time.monotonic() - self._outage_since:.0f} s and "
              f"{self._attempts} tries", file=sys.stderr, flush=True)
        self._outage_since, self._attempts = None, 0

    def _report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < 1.0:
            return
        self._last_report = now
        behind = sum(f.behind() for f in self.open.values())
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
