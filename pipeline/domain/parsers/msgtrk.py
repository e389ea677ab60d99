"""Exchange message tracking logs (MSGTRK*.LOG), Exchange 2007 to Exchange Server SE.

Each file starts with a header block; its `#Fields:` line names the columns, and the list differs
between versions (21 fields in 2007, 26 in 2010, 27 or 30 in 2013+), so the columns are always
taken from the file itself. Shippers concatenate files, so a new header block can appear at any
line and replaces the previous one.

`parse` reads the header lines at once and queues the data rows (a Segment per run of rows under
one header block) in a TrackingRows, which reads the rows of every source of a batch column-wise
when it is flushed (msgtrk_rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.domain.builds import Build
from pipeline.domain.lines import LineRun

if TYPE_CHECKING:
    from pipeline.domain.parsers.msgtrk_rows import TrackingRows

FORMAT = "msgtrk"
_HEADER_NAMES = ("#software:", "#version:", "#log-type:", "#date:", "#fields:")
_BOM = "\ufeff".encode("utf-8")
# Short host names learnt per source (first label -> FQDN); bounded so a source cannot grow it forever.
MAX_KNOWN_HOSTS = 4096


def looks_like(line: str) -> bool:
    return line.lstrip("\ufeff").lower().startswith(_HEADER_NAMES)


def is_header(line: str) -> bool:
    return line[:1] == "#" or line[:2] == "\ufeff#"


def initial_state() -> dict:
    return {"version": None, "fields": None}


@dataclass
class Segment:
    """Data lines of one source read under one header block; `raw` when they are all of a packed
    run's lines, to be read from its bytes as they are."""

    run: LineRun
    kept: list[int] | range
    version: str | None
    hosts: dict[str, str]
    raw: bytes | None = None


def parse(source_state: dict, run: LineRun, start: int, end: int, rows: TrackingRows, out) -> None:
    """Read lines [start, end) of `run`. `source_state` is the dispatcher's state of the source:
    header lines update its "parser" part (a new file's #Software line also starts a new "hosts"
    map); data rows are queued in `rows`, and reach `out` when the batch flushes them."""
    raw = run.raw_bytes()
    if raw is not None and start == 0 and end == len(run):
        _parse_bytes(source_state, run, raw, rows, out)
        return
    lines = run.lines
    segment = start
    for index in [i for i in range(start, end) if is_header(lines[i])] + [end]:
        if index > segment:
            _queue(source_state, run, [i for i in range(segment, index) if lines[i] and not lines[i].isspace()], None,
                   rows, out)
        if index < end:
            _header_line(source_state, lines[index].lstrip("\ufeff").rstrip("\r\n"))
        segment = index + 1


def _parse_bytes(source_state: dict, run: LineRun, raw: bytes, rows: TrackingRows, out) -> None:
    """A packed run read from its bytes: header lines are decoded one by one, and the rows between
    them queued as the bytes they are (empty lines among them are found when the CSV reader
    returns fewer rows than there are lines: msgtrk_rows._Read._rows)."""
    headers = _header_starts(raw)
    line = offset = 0
    for header in headers + [len(raw)]:
        if header > offset:
            # The run knows its own length: the last piece (often the only one) needs no count.
            count = len(run) - line if header == len(raw) else raw.count(b"\n", offset, header)
            _queue(source_state, run, range(line, line + count), raw[offset:header], rows, out)
            line += count
        if header < len(raw):
            stop = raw.find(b"\n", header) + 1 or len(raw)
            _header_line(source_state, raw[header:stop].decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n"))
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


def _queue(source_state: dict, run: LineRun, kept: list[int] | range, raw: bytes | None, rows: TrackingRows, out) -> None:
    state = source_state["parser"]
    if state["fields"] is None:
        lines = run.lines
        for i in kept:
            if lines[i] and not lines[i].isspace():
                out.error(run.error(i, "data line before any #Fields: header line"))
    elif kept:
        rows.add(state["fields"], Segment(run, kept, state["version"], source_state["hosts"], raw))


def _header_line(source_state: dict, text: str) -> None:
    name, _, value = text[1:].partition(":")
    name, value = name.strip().lower(), value.strip()
    state = source_state["parser"]
    if name == "software":
        # A new log file starts: nothing of the previous one carries over, so reading the same
        # file again gives the same events. (A new map: rows still queued keep the old one.)
        state.update(initial_state())
        source_state["hosts"] = {}
    elif name == "version":
        state["version"] = value
    elif name == "fields":
        state["fields"] = [f.strip().lower() for f in value.split(",")]


def writer_build(text: str | None) -> str | None:
    """The build in #Version / schema-version, or None for the constants that are not builds.

    Exchange 2010 writes 14.0.0.0 and protocol logs 15.0.0.0; a real build never has build number 0.
    """
    build = Build.parse(text)
    if build is None or len(build.parts) < 3 or build.parts[2] == 0:
        return None
    return str(build)
