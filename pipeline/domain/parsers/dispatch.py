"""One entry point for every format: detect the format of a source from its first meaningful line,
then hand its lines, a run at a time, to that format's parser with the source's state.

The state is a SourceState, which the parsers change in place while they read a run: the format's
own state (each parser's dataclass), and the host names learnt. The stream keeps its JSON
(`to_json`) in a Faust table keyed by source, read once and written once per batch, and `patchgate
evaluate` in a dict: both run exactly this code. Postfix keeps its open messages apart
from it, one entry per queue id (see postfix.OpenMessages). Message tracking log rows wait in a
TrackingRows until the caller flushes it at the end of its batch, so that the rows of every
source in the batch are read in one go.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pipeline.domain import hostnames
from pipeline.domain.config import FormatConfig
from pipeline.domain.events import MessageTrace, ParseError, TraceGroup
from pipeline.domain.identity_writers import held_rows_newest_ms
from pipeline.domain.lines import LineRun
from pipeline.domain.parsers import envelope, exim, exo, headers, msgtrk, postfix
from pipeline.domain.parsers.exim import EximState
from pipeline.domain.parsers.exo import ExportState
from pipeline.domain.parsers.headers import HeaderState
from pipeline.domain.parsers.msgtrk import TrackingState
from pipeline.domain.parsers.msgtrk_rows import TrackingRows
from pipeline.domain.parsers.postfix import MemoryOpenMessages, OpenMessages, PostfixState

# Detection order matters: a message tracking log's "#" header (or a row of one without it: an
# ISO-8601 time, then as many values as a version's columns) and an export's CSV header are
# unmistakable; syslog lines come last.
DETECTORS = (
    (msgtrk.FORMAT, msgtrk.looks_like),
    (exo.FORMAT, exo.looks_like),
    (headers.FORMAT, headers.looks_like),
    (postfix.FORMAT, postfix.looks_like),
    (exim.FORMAT, exim.looks_like),
)
ParserState = TrackingState | ExportState | HeaderState | PostfixState | EximState
_STATES: dict[str, type[ParserState]] = {
    state.FORMAT: state for state in (TrackingState, ExportState, HeaderState, PostfixState, EximState)}


@dataclass
class SourceState:
    """What a source carries from one run to the next: its format's state (None until a line told
    the format) and the host names it learnt (first label -> FQDN, see _Qualifying)."""

    parser: ParserState | None = None
    hosts: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def format(self) -> str | None:
        return None if self.parser is None else self.parser.FORMAT

    def to_json(self) -> dict:
        return {"format": self.format, "parser": None if self.parser is None else self.parser.to_json(),
                "hosts": self.hosts}

    @classmethod
    def from_json(cls, data: dict) -> SourceState:
        """The state `to_json` gave, by this version or an earlier one."""
        name, parser = data["format"], data["parser"]
        if name is None or parser is None:
            return cls(None, data["hosts"])
        if name not in _STATES:
            raise ValueError(f"a parser state of format {name!r}, which no parser reads ({', '.join(_STATES)})")
        return cls(_STATES[name].from_json(parser), data["hosts"])


class ParseOutput(Protocol):
    """Where parsers put what they read: single traces, groups of traces, and bad lines."""

    def trace(self, trace: MessageTrace) -> None: ...

    def group(self, group: TraceGroup) -> None: ...

    def error(self, error: ParseError) -> None: ...


def detect(line: str) -> str | None:
    text = line.lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        return None
    return next((name for name, looks_like in DETECTORS if looks_like(text)), None)


def parse_run(state: SourceState | None, run: LineRun, out: ParseOutput, open_messages: OpenMessages,
              tracking_rows: TrackingRows, formats: FormatConfig = FormatConfig()) -> SourceState:
    """Feed a run of lines of one source; returns its state after them (changed in place). Rows of
    message tracking logs reach `out` when the caller flushes `tracking_rows`."""
    state = state or SourceState()
    index, end = 0, len(run)
    while index < end:
        parser = state.parser
        if isinstance(parser, TrackingState):
            state.parser, state.hosts = msgtrk.parse(parser, state.hosts, run, index, end, tracking_rows, out)
            return state
        if parser is None:
            line = run.line(index)
            found = detect(line)
            if found is None:
                # A mail log may open with another program's line (amavis, dovecot): skipped, as later on.
                if line.strip() and not postfix.syslog_other_program(line.lstrip("\ufeff")):
                    out.error(run.error(index, "unknown format: not a line of any supported log"))
                index += 1
            else:
                state.parser = _STATES[found]()
            continue
        lines = run.lines
        # Shippers concatenate files: a message tracking log's header block can start anywhere.
        stop = next((i for i in range(index, end)
                     if msgtrk.is_header(lines[i]) and detect(lines[i]) == msgtrk.FORMAT), end)
        qualifying = _Qualifying(state.hosts, out)
        if isinstance(parser, PostfixState):
            postfix.parse(parser, run, index, stop, qualifying, open_messages, formats.syslog_zone)
        elif isinstance(parser, ExportState):
            exo.parse(parser, run, index, stop, qualifying, formats)
        elif isinstance(parser, EximState):
            exim.parse(parser, run, index, stop, qualifying, formats.syslog_zone)
        else:
            headers.parse(parser, run, index, stop, qualifying)
        if stop < end:
            state.parser = TrackingState()
        index = stop
    return state


def finish(state: SourceState | None, source: str, out: ParseOutput, open_messages: OpenMessages) -> SourceState:
    """At the end of a source: emit what formats that span lines still hold (a tracking log, the
    rows it holds back for a writer's FQDN: as they are)."""
    state = state or SourceState()
    parser = state.parser
    qualifying = _Qualifying(state.hosts, out)
    if isinstance(parser, HeaderState):
        headers.finish(parser, source, qualifying)
    elif isinstance(parser, PostfixState):
        postfix.finish(parser, source, qualifying, open_messages)
    elif isinstance(parser, TrackingState):
        rows = TrackingRows()
        rows.end_file(parser, source)
        rows.flush(qualifying)
    return state


def holds(state: SourceState | None) -> bool:
    """Whether the source holds lines back that `finish` would let go (a stream ends it after it
    was idle a while: see domain.source_ends)."""
    parser = None if state is None else state.parser
    if isinstance(parser, HeaderState):
        return headers.holds(parser)
    if isinstance(parser, PostfixState):
        return parser.open > 0
    if isinstance(parser, TrackingState):
        return parser.held is not None and bool(parser.held.rows)
    return False


def held_newest_ms(state: SourceState | None) -> int | None:
    """The newest event time among the lines a source holds back, where its format knows it (a
    header block's time is known only once it is closed)."""
    parser = None if state is None else state.parser
    if isinstance(parser, PostfixState):
        return parser.newest_ms
    if isinstance(parser, TrackingState):
        return held_rows_newest_ms(parser)
    return None


class Sources:
    """The parser states and open messages of the sources a file holds, in memory (`evaluate`; the
    stream keeps them in tables). A file of shipper output interleaves several original sources:
    each line goes to the state of the source it names, as in the stream."""

    def __init__(self, formats: FormatConfig = FormatConfig()) -> None:
        self.formats = formats
        self.states: dict[str, SourceState] = {}
        self.open_messages: dict[str, MemoryOpenMessages] = {}

    def parse(self, run: LineRun, out: ParseOutput, tracking_rows: TrackingRows) -> None:
        for part in envelope.unwrap_run(run):
            if isinstance(part, ParseError):
                out.error(part)
                continue
            store = self.open_messages.setdefault(part.source, MemoryOpenMessages())
            self.states[part.source] = parse_run(self.states.get(part.source), part, out, store, tracking_rows,
                                                   self.formats)

    def finish(self, out: ParseOutput) -> None:
        for name, state in self.states.items():
            finish(state, name, out, self.open_messages[name])


class _Qualifying:
    """Passes traces on with host names checked and qualified, and event times cut to milliseconds
    (the precision of the wire format and of ClickHouse).

    A name that no DNS could hold (control characters, bad length or characters) is reported with
    the trace's position and dropped from it. A short name is joined to the FQDN with the same first
    label seen in the same source: the FQDNs of a trace are learnt before its short names are
    resolved, so one trace naming a server both ways names one server. Message tracking logs do
    the same column-wise (msgtrk_rows)."""

    def __init__(self, hosts: dict[str, str], out: ParseOutput):
        self.hosts, self.out = hosts, out

    def trace(self, trace: MessageTrace) -> None:
        hosts = self.hosts
        # MessageTrace fields to replace: the time, host names, the chain.
        changes: dict[str, Any] = {}
        if trace.event_time.microsecond % 1000:
            changes["event_time"] = trace.event_time.replace(microsecond=trace.event_time.microsecond // 1000 * 1000)
        names: dict[str, str] = {}
        for field in _HOST_FIELDS:
            host = getattr(trace, field)
            if host and (problem := hostnames.problem(host)):
                self.out.error(ParseError(trace.position, problem, field=field.replace("_", "-")))
                changes[field] = None
            elif host:
                names[field] = host.lower()
        for host in names.values():
            label = host.split(".")[0]
            if "." in host and label and not label.isdigit() and (
                    len(hosts) < msgtrk.MAX_KNOWN_HOSTS or label in hosts):
                hosts[label] = host
        for field, host in names.items():
            if "." not in host and host in hosts:
                changes[field] = hosts[host]
        if trace.received and hostnames.has_control("".join(trace.received)):
            changes["received"] = self._without_control(trace)
        self.out.trace(replace(trace, **changes) if changes else trace)

    def _without_control(self, trace: MessageTrace) -> tuple[str, ...]:
        """The chain without the headers that carry control characters (each one reported)."""
        kept = []
        for value in trace.received:
            if hostnames.has_control(value):
                self.out.error(ParseError(trace.position, f"Received header {value[:80]!r} holds control characters, "
                                          "left out of the chain", field="Received"))
            else:
                kept.append(value)
        return tuple(kept)

    def group(self, group: TraceGroup) -> None:
        self.out.group(group)

    def error(self, error: ParseError) -> None:
        self.out.error(error)


_HOST_FIELDS = ("logged_by", "client_hostname", "server_hostname")
