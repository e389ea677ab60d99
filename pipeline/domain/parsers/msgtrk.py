"""Exchange message tracking logs (MSGTRK*.LOG), Exchange 2007 to Exchange Server SE.

Each file starts with a header block; its `#Fields:` line names the columns, and the list differs
between versions (21 fields in 2007, 26 in 2010, 27 or 30 in 2013+), so the columns are taken from
the file itself. Shippers concatenate files, so a new header block can appear at any line and
replaces the previous one. Shippers set to drop "#" lines (Filebeat's `exclude_lines: ['^#']`)
send the rows alone: rows without a #Fields line take the columns of the version with as many
fields as they have values, and their build is in the 2013+ `schema-version` column.

Other Exchange logs share the header block (SMTP protocol logs, connectivity logs, agent logs):
a block whose #Log-type or #Fields is not a tracking log's is reported once, and its rows skipped.

`parse` reads the header lines at once and queues the data rows (a Segment per run of rows under
one header block) in a RowQueue: msgtrk_rows.TrackingRows, which reads the rows of every source of
a batch column-wise when it is flushed. What a file's header block said is its TrackingState.

Exchange names the writing server by its short name in mailbox rows (STOREDRIVER) and by its FQDN
in SMTP rows. The rows before a file's first FQDN are held back in the file's parser state until
it shows (identity_writers.HeldRows): a new file (its #Software line) lets them go as they are.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, Protocol

from pipeline.domain.builds import Build
from pipeline.domain.lines import LineRun

FORMAT = "msgtrk"
_HEADER_NAMES = ("#software:", "#version:", "#log-type:", "#date:", "#fields:")
_BOM = "\ufeff".encode("utf-8")
# Short host names learnt per source (first label -> FQDN); bounded so a source cannot grow it forever.
MAX_KNOWN_HOSTS = 4096
# The #Version an Exchange 2010 tracking log carries whatever its build: it still names the product.
EXCHANGE_2010_VERSION = "14.0.0.0"

# The columns of each version, in order: Exchange 2013 (later CUs) to Server SE write 30; 2013 CU9
# stopped at custom-data; 2010 had no network-message-id; 2007 stopped at message-info.
_FIELDS_2013_LATER = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname", "source-context", "connector-id",
    "source", "event-id", "internal-message-id", "message-id", "network-message-id", "recipient-address",
    "recipient-status", "total-bytes", "recipient-count", "related-recipient-address", "reference",
    "message-subject", "sender-address", "return-path", "message-info", "directionality", "tenant-id",
    "original-client-ip", "original-server-ip", "custom-data", "transport-traffic-type", "log-id", "schema-version",
)
_FIELDS_2013_CU9 = _FIELDS_2013_LATER[:27]
_FIELDS_2010 = tuple(f for f in _FIELDS_2013_CU9 if f != "network-message-id")
_FIELDS_2007 = _FIELDS_2010[:21]
# The columns of a row without its header lines, by its number of values.
LAYOUTS = {len(fields): fields for fields in (_FIELDS_2007, _FIELDS_2010, _FIELDS_2013_CU9, _FIELDS_2013_LATER)}
# What a #Fields line must name to be read as a tracking log: the time and who wrote the row.
_NEEDED = ("date-time", "client-hostname", "server-hostname", "event-id")
_TRACKING_LOG_TYPE = "message tracking log"
# A row starts with its ISO-8601 UTC time, as the first of its values.
_ROW_START = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?,")
# A row of an SMTP protocol log (date-time, connector-id, session-id, sequence-number, local-endpoint,
# remote-endpoint, event, data, context): the two endpoints are address:port and the event one sign.
_PROTOCOL_LOG_ROW = re.compile(
    r"[^,]*,[^,]*,[0-9A-F]{16},\d+,[0-9a-fA-F.:\[\]]+:\d+,[0-9a-fA-F.:\[\]]+:\d+,[-+<>*],")
PROTOCOL_LOG_ROWS = ("rows of an SMTP protocol log without its header lines (date-time, connector-id, session-id, "
                     "...): not a message tracking log, its rows are skipped")
# Rows without header lines carry no #Version, but Exchange 2007 alone wrote 21 columns: they name
# the product, and carry it as Exchange 2010's rows carry 14.0.0.0 (a version that is no build).
EXCHANGE_2007_VERSION = "8.0.0.0"
PRODUCT_VERSIONS = {EXCHANGE_2010_VERSION: "Exchange2010", EXCHANGE_2007_VERSION: "Exchange2007"}


def looks_like(line: str) -> bool:
    """A tracking log's header or row, or an SMTP protocol log's row (refused in one error)."""
    text = line.lstrip("\ufeff")
    return text.lower().startswith(_HEADER_NAMES) or (
        _ROW_START.match(text) is not None and (layout_of(text) is not None or is_protocol_log_row(text)))


def is_protocol_log_row(line: str) -> bool:
    return _PROTOCOL_LOG_ROW.match(line) is not None


def version_of_rows(fields: tuple[str, ...] | list[str]) -> str | None:
    """The product version that header-less rows of these columns name, if only one product wrote them."""
    return EXCHANGE_2007_VERSION if tuple(fields) == _FIELDS_2007 else None


def is_header(line: str) -> bool:
    return line[:1] == "#" or line[:2] == "\ufeff#"


def layout_of(line: str) -> tuple[str, ...] | None:
    """The columns of a row read without its header lines, from its number of values (None when
    no version writes that many)."""
    return LAYOUTS.get(_value_count(line))


def no_layout(count: int) -> str:
    return f"{count} values: no message tracking log has that many columns ({', '.join(map(str, LAYOUTS))})"


class HeldLayout(NamedTuple):
    """The columns held rows were read under (see Segment)."""

    fields: list[str]
    version: str | None
    inferred: bool


class HeldRow(NamedTuple):
    """A row held back for its writer's FQDN (identity_writers.HeldRows): `layout` is the number of
    its HeldLayout, `writer` its short writer name, `time_ms` its event time."""

    layout: int
    writer: str
    time_ms: int
    line: int | None
    text: str


@dataclass
class HeldState:
    """The rows a file holds back, as its state stores them (JSON: each layout and row a list)."""

    layouts: list[HeldLayout] = field(default_factory=list)
    rows: list[HeldRow] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"layouts": [list(layout) for layout in self.layouts], "rows": [list(row) for row in self.rows]}

    @classmethod
    def from_json(cls, data: dict) -> HeldState:
        return cls([HeldLayout(*layout) for layout in data["layouts"]], [HeldRow(*row) for row in data["rows"]])


@dataclass
class TrackingState:
    """A source's state while it is a tracking log: what the current header block said, and the rows
    the file holds back (None: none)."""

    FORMAT: ClassVar[str] = FORMAT

    version: str | None = None
    fields: list[str] | None = None
    # The current header block is of another log, whose rows are skipped.
    refused: bool = False
    held: HeldState | None = None

    def to_json(self) -> dict:
        stored: dict = {"version": self.version, "fields": self.fields, "refused": self.refused}
        if self.held is not None:
            stored["held"] = self.held.to_json()
        return stored

    @classmethod
    def from_json(cls, data: dict) -> TrackingState:
        held = data.get("held")
        return cls(data["version"], data["fields"], data.get("refused", False),
                   None if held is None else HeldState.from_json(held))


@dataclass
class Segment:
    """Data lines of one source read under one header block; `raw` when they are all of a packed
    run's lines, to be read from its bytes as they are; `inferred` when no #Fields line gave the
    columns, and they are those of the version with the first row's number of values. `file` is
    the parser state of the file the lines belong to, where rows wait for their writer's FQDN;
    None for rows that waited already (their names are settled, they wait no more)."""

    run: LineRun
    kept: list[int] | range
    version: str | None
    hosts: dict[str, str]
    raw: bytes | None = None
    inferred: bool = False
    file: TrackingState | None = None


class RowQueue(Protocol):
    """Where `parse` queues the data rows until its caller reads them (msgtrk_rows.TrackingRows)."""

    def add(self, fields: list[str], segment: Segment) -> None:
        """Queue the segment's rows, to be read under the columns `fields`."""

    def end_file(self, file: TrackingState, source: str) -> None:
        """The file whose parser state is `file` ended: the rows it holds back go as they are."""


@dataclass
class _Reading:
    """The file being read and the host names its source learnt: a new file's #Software line
    replaces both."""

    state: TrackingState
    hosts: dict[str, str]


def parse(state: TrackingState, hosts: dict[str, str], run: LineRun, start: int, end: int, rows: RowQueue,
          out) -> tuple[TrackingState, dict[str, str]]:
    """Read lines [start, end) of `run`, of a file whose state is `state` in a source that learnt
    `hosts`; returns those of the file the lines end in (a new file's #Software line starts new
    ones). Header lines update the state; data rows are queued in `rows`, and reach `out` when the
    batch flushes them (which may teach `hosts` names and hold rows back in the state)."""
    reading = _Reading(state, hosts)
    raw = run.raw_bytes()
    if raw is not None and start == 0 and end == len(run):
        _parse_bytes(reading, run, raw, rows, out)
        return reading.state, reading.hosts
    lines = run.lines
    segment = start
    for index in [i for i in range(start, end) if is_header(lines[i])] + [end]:
        if index > segment:
            _queue(reading, run, [i for i in range(segment, index) if lines[i] and not lines[i].isspace()], None,
                   rows, out)
        if index < end:
            _header_line(reading, run, index, lines[index].lstrip("\ufeff").rstrip("\r\n"), rows, out)
        segment = index + 1
    return reading.state, reading.hosts


def _parse_bytes(reading: _Reading, run: LineRun, raw: bytes, rows: RowQueue, out) -> None:
    """A packed run read from its bytes: header lines are decoded one by one, and the rows between
    them queued as the bytes they are (empty lines among them are found when the CSV reader
    returns fewer rows than there are lines: msgtrk_rows._Read._rows)."""
    headers = _header_starts(raw)
    line = offset = 0
    for header in headers + [len(raw)]:
        if header > offset:
            # The run knows its own length: the last piece (often the only one) needs no count.
            count = len(run) - line if header == len(raw) else raw.count(b"\n", offset, header)
            _queue(reading, run, range(line, line + count), raw[offset:header], rows, out)
            line += count
        if header < len(raw):
            stop = raw.find(b"\n", header) + 1 or len(raw)
            _header_line(reading, run, line,
                         raw[header:stop].decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n"), rows, out)
            line, offset = line + 1, stop


def _header_starts(raw: bytes) -> list[int]:
    """Where the header lines ("#..." or, at a file's start, BOM "#...") start: a scan for "#",
    which is rare in rows, rather than for every line start."""
    found = []
    at = raw.find(b"#")
    while at != -1:
        line_start = at - len(_BOM) if raw[max(0, at - len(_BOM)):at] == _BOM else at
        if line_start == 0 or raw[line_start - 1:line_start] == b"\n":
            found.append(line_start)
        at = raw.find(b"#", at + 1)
    return found


def _queue(reading: _Reading, run: LineRun, kept: list[int] | range, raw: bytes | None, rows: RowQueue,
           out) -> None:
    state = reading.state
    if state.refused:
        return
    if state.fields is None:
        _queue_inferred(reading, run, kept, raw, rows, out)
    elif kept:
        rows.add(state.fields, Segment(run, kept, state.version, reading.hosts, raw, file=state))


def _queue_inferred(reading: _Reading, run: LineRun, kept: list[int] | range, raw: bytes | None, rows: RowQueue,
                    out) -> None:
    """Rows without a #Fields line (a shipper dropped the header lines): the first one's number of
    values gives the columns (rows of another version among them are moved to theirs when the
    batch is read). Rows before the first of a known version are errors."""
    state = reading.state
    first = _first_known_row(state, run, kept, raw, out)
    if first is None:
        return
    number, offset, fields = first
    if number:
        kept, raw = kept[number:], None if raw is None else raw[offset:]
    version = state.version or version_of_rows(fields)
    rows.add(list(fields), Segment(run, kept, version, reading.hosts, raw, inferred=True, file=state))


def _first_known_row(state: TrackingState, run: LineRun, kept: list[int] | range, raw: bytes | None,
                     out) -> tuple[int, int, tuple[str, ...]] | None:
    """(place among the kept lines, byte offset in `raw`, columns) of the first row of a known
    version, if any; the rows before it are errors. None too for the rows of a protocol log."""
    for number, (index, text, offset) in enumerate(_row_texts(run, kept, raw)):
        if not text or text.isspace():
            continue
        if is_protocol_log_row(text):
            # One error for the file, not one per row: it is another log, up to its next header block.
            _refuse(state, run, index, PROTOCOL_LOG_ROWS, out)
            return None
        fields = layout_of(text)
        if fields is not None:
            return number, offset, fields
        out.error(run.error(index, no_layout(_value_count(text))))
    return None


def _row_texts(run: LineRun, kept: list[int] | range, raw: bytes | None) -> Iterator[tuple[int, str, int]]:
    """(line index, text, byte offset in `raw`) of the kept lines, decoding packed bytes only as
    far as they are read."""
    if raw is None:
        lines = run.lines
        for index in kept:
            yield index, lines[index].rstrip("\r\n"), 0
        return
    offset = 0
    for index in kept:
        stop = raw.find(b"\n", offset)
        stop = len(raw) if stop < 0 else stop
        yield index, raw[offset:stop].decode("utf-8", "replace").rstrip("\r"), offset
        offset = stop + 1


def _value_count(line: str) -> int:
    try:
        return len(next(csv.reader([line.rstrip("\r\n")]), []))
    except csv.Error:
        return 0


def _header_line(reading: _Reading, run: LineRun, index: int, text: str, rows: RowQueue, out) -> None:
    name, _, value = text[1:].partition(":")
    name, value = name.strip().lower(), value.strip()
    state = reading.state
    if name == "software":
        # A new log file starts: nothing of the previous one carries over, so reading the same
        # file again gives the same events. (New objects: rows still queued keep the old file's
        # names and state; the rows it holds go as they are once those are read.)
        rows.end_file(state, run.source)
        state = reading.state = TrackingState()
        reading.hosts = {}
    elif state.refused:
        return
    if name == "version":
        state.version = value
    elif name == "log-type" and value.lower() != _TRACKING_LOG_TYPE:
        _refuse(state, run, index, f"log type {value!r}, not a message tracking log: its rows are skipped", out)
    elif name == "fields":
        fields = [f.strip().lower() for f in value.split(",")]
        missing = [f for f in _NEEDED if f not in fields]
        if missing:
            _refuse(state, run, index,
                    f"#Fields name no {', '.join(missing)}: not a message tracking log, its rows are skipped", out)
        else:
            state.fields = fields


def _refuse(state: TrackingState, run: LineRun, index: int, reason: str, out) -> None:
    """Another Exchange log (an SMTP protocol log, a connectivity log...): one error for its header
    block, and its rows skipped up to the next #Software line."""
    state.fields, state.refused = None, True
    out.error(run.error(index, reason))


def writer_build(text: str | None) -> str | None:
    """The build in #Version / schema-version, or None for the constants that are not builds.

    Exchange 2010 writes 14.0.0.0 and protocol logs 15.0.0.0; a real build never has build number 0.
    """
    build = Build.parse(text)
    if build is None or len(build.parts) < 3 or build.parts[2] == 0:
        return None
    return str(build)
