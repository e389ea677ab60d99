"""Which server wrote a message tracking log's row that names its writer by its short name.

Exchange names the writing server by its short name in mailbox rows (STOREDRIVER) and by its FQDN
in SMTP rows. A short writer name is joined to the FQDN with the same first label that the same
file named earlier, or that the same row names. A row whose short name no FQDN of its file
resolved yet is held back in the file's parser state (HeldRows) until the file names that server
in full, and then goes under the FQDN, in the batch that found it; held rows that wait too long
go as they are. How much row text a state may hold is the caller's to say: it knows how the state
is stored (the stream: one Kafka record).

The tracking-log reader (parsers.msgtrk_rows) reads a batch's rows column-wise, and hands the rows
whose names it cannot settle column-wise to `qualify_rows`, one segment at a time.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pipeline.domain.events import SourcePosition
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers.msgtrk import MAX_KNOWN_HOSTS, HeldLayout, HeldRow, HeldState, Segment, TrackingState

# A held row goes as it is when a row this much newer (event time) follows it in its file.
MAX_HELD_MS = 3_600_000


def held_rows_newest_ms(file: TrackingState) -> int | None:
    """The newest event time of the rows the file's parser state holds back, if any."""
    return None if file.held is None else max((row.time_ms for row in file.held.rows), default=None)


class HeldRows:
    """The rows a file holds back, kept in its parser state (TrackingState.held: the layouts the
    rows were read under, and the rows): rows whose writer is a short name that no FQDN of the file
    resolved yet. Exchange names itself short in mailbox rows and in full in SMTP rows, so the rows
    before a file's first SMTP row would otherwise name a second server.

    A held row goes under the FQDN when the file first names one with its writer as first label,
    and as it is when a row more than MAX_HELD_MS newer follows it, when the held rows' text
    outgrows `max_bytes` (the oldest first; None: no bound), or when the file or the source ends.
    A row that goes while the read that held it goes on stays in it (most rows wait only for the
    next few rows); one held before is queued again, in a segment of its own with its name
    settled, and read like any other."""

    def __init__(self, file: TrackingState, source: str, max_bytes: int | None) -> None:
        self.file, self.source, self.max_bytes = file, source, max_bytes
        self.stored = file.held or HeldState()
        self.layouts, self.rows = self.stored.layouts, self.stored.rows
        self.writers = Counter(row.writer for row in self.rows)
        self.size = sum(len(row.text.encode("utf-8")) for row in self.rows)
        self.oldest = min((row.time_ms for row in self.rows), default=None)
        # Rows that went and wait to be queued: (layout, row), and the FQDNs of the resolved ones.
        self._resolved: list[tuple[HeldLayout, HeldRow]] = []
        self._names: dict[str, str] = {}
        self._released: list[tuple[HeldLayout, HeldRow]] = []
        # Rows held by the read going on, by identity: where it keeps their writer and whether held.
        self._here: dict[int, tuple[list[str], list[bool], int]] = {}

    def hold(self, fields: list[str], segment: Segment, index: int, text: str, writer: str, time_ms: int,
             place: tuple[list[str], list[bool], int]) -> None:
        """Hold line `index` of the segment's run (`text`), read under `fields`; `place`: the
        read's writer names and held flags of the segment's rows, and the row's number in them."""
        layout = HeldLayout(fields, segment.version, segment.inferred)
        if layout not in self.layouts:
            self.layouts.append(layout)
        row = HeldRow(self.layouts.index(layout), writer, time_ms, segment.run.line_number(index), text)
        self.rows.append(row)
        self._here[id(row)] = place
        self.file.held = self.stored
        self.writers[writer] += 1
        self.size += len(text.encode("utf-8"))
        self.oldest = time_ms if self.oldest is None else min(self.oldest, time_ms)
        if self.max_bytes is not None and self.size > self.max_bytes:
            # Down to half the bound, so that a file that never names its writer in full does not
            # release a row (and copy the list) for every row it holds.
            count, size = 0, self.size
            while size > self.max_bytes // 2:
                size -= len(self.rows[count].text.encode("utf-8"))
                count += 1
            self._go(self.rows[:count], self._released)

    def resolve(self, label: str, host: str) -> None:
        """The file names `host` (first label `label`) for the first time: the rows held for
        `label` go under it."""
        if self.writers.get(label):
            self._names[label] = host
            self._go([row for row in self.rows if row.writer == label], self._resolved, host)

    def overdue(self, time_ms: int) -> bool:
        """Whether a row of `time_ms` lets a held row go (one more than MAX_HELD_MS older)."""
        return self.oldest is not None and time_ms - MAX_HELD_MS > self.oldest

    def release_older(self, time_ms: int) -> None:
        """A row of `time_ms` follows: rows more than MAX_HELD_MS older go as they are."""
        if self.overdue(time_ms):
            self._go([row for row in self.rows if row.time_ms < time_ms - MAX_HELD_MS], self._released)

    def release_all(self, add) -> None:
        """The file ended: every held row goes as it is, queued (`add`: TrackingRows.add)."""
        self._go(list(self.rows), self._released)
        self.queue(add)

    def end_read(self, add) -> None:
        """The read going on is over: its rows still held stay so, those held before that went
        are queued (`add`: TrackingRows.add)."""
        self._here.clear()
        self.queue(add)

    def queue(self, add) -> None:
        """Queue the rows that went, a segment per layout: the resolved ones know their FQDNs, the
        others keep their short names."""
        if not (self._resolved or self._released):
            return
        for gone, names in ((self._resolved, self._names), (self._released, {})):
            by_layout: dict[int, tuple[HeldLayout, list[HeldRow]]] = {}
            for layout, row in gone:
                by_layout.setdefault(id(layout), (layout, []))[1].append(row)
            for (fields, version, inferred), rows in by_layout.values():
                run = LineRun.of_lines(self.source, [row.text for row in rows],
                                       [SourcePosition(self.source, row.line) for row in rows], None)
                add(fields, Segment(run, range(len(rows)), version, dict(names), inferred=inferred))
            gone.clear()
        self._names = {}

    def _go(self, rows: list[HeldRow], into: list[tuple[HeldLayout, HeldRow]], host: str | None = None) -> None:
        """`rows` go (under `host`, when given): back into the read going on when it held them."""
        for row in rows:
            place = self._here.pop(id(row), None)
            if place is None:
                into.append((self.layouts[row.layout], row))
            else:
                writers, held, number = place
                held[number] = False
                if host is not None:
                    writers[number] = host
        going = {id(row) for row in rows}
        self.rows[:] = [row for row in self.rows if id(row) not in going]
        for row in rows:
            self.writers[row.writer] -= 1
            self.size -= len(row.text.encode("utf-8"))
        self.oldest = min((row.time_ms for row in self.rows), default=None)
        if not self.rows:
            self.layouts.clear()
            self.file.held = None


def qualify_rows(fields: list[str], segment: Segment, held: HeldRows | None, problems: dict[str, str],
                 row_text: Callable[[int], str], writers: list[str], clients: list[str], servers: list[str],
                 times: list[int | None], holdable: list[bool]) -> tuple[list[str], list[bool]]:
    """The writers of the segment's rows (read under `fields`) qualified row by row, as a
    line-by-line reader would, and which rows are held (both may change until the read is over,
    as the rows after them let held ones go). `problems`: the names that are no host name, never
    learnt; `row_text`: a row's text, asked for in order; `holdable`: the rows that may be held
    (they read, in time). Rows that were held before (no file) have their names settled: they
    learn nothing."""
    hosts = segment.hosts
    learn = segment.file is not None
    kept_back = [False] * len(writers)
    for row, names in enumerate(zip(writers, clients, servers, strict=True)):
        if learn:
            # A row's own FQDNs first: client EX01.CORP.TEST and server EX01 are one server.
            for host in names:
                if "." in host and (label := first_label(host)) and host not in problems and (
                        len(hosts) < MAX_KNOWN_HOSTS or label in hosts):
                    if held is not None and label not in hosts:
                        held.resolve(label, host)
                    hosts[label] = host
        time_ms = times[row]
        if held is not None and held.oldest is not None and time_ms is not None:
            held.release_older(time_ms)
        name = writers[row]
        if "." in name or not is_short(name):  # the dot first: most writers are FQDNs
            continue
        if name in hosts:
            writers[row] = hosts[name]
        elif held is not None and holdable[row] and name not in problems:
            assert time_ms is not None, "a holdable row is one whose time reads"
            kept_back[row] = True
            held.hold(fields, segment, segment.kept[row], row_text(row), name, time_ms,
                      (writers, kept_back, row))
    return writers, kept_back


def first_label(host: str | None) -> str | None:
    """The first label of a host name, or None for what is no name (empty, an IP address)."""
    label = (host or "").split(".")[0]
    return None if not label or label.isdigit() else label


def is_short(host: str | None) -> bool:
    """Whether `host` is a short host name: one label, not an IP address."""
    if not host:
        return False
    return "." not in host and ":" not in host and not host.isdigit()
