"""The hot path: a batch of mail.logs.raw records becomes server observations in one step, without
a Kafka hop per line.

A packed record is one run of lines; a one-line record (Filebeat, Fluent Bit, Vector) is unwrapped
from its envelope, and consecutive ones of a source are joined into one run. Each source's parser
state is read once per batch, its runs are parsed into one ObservationBatch, and the state is
written once, after what the batch produced was acknowledged (see agents.py). Lines the parsers
reject become dead letters naming their file position and their record, and so do lines longer than
`formats.max_line_bytes`, which are not parsed (a record of one line: when the record is longer).

A source's stored state (StoredSource) remembers the raw offset it has read up to when it changed.
After a restart, a record at or below it was applied already (its output was acknowledged before
the state was written) and is skipped, so a line never changes a state twice, even when offsets had
not been committed. A batch that leaves a state as it was writes nothing: applying it again is
harmless.

Sources that hold lines back are ended as `evaluate` ends a file once they have been idle (see
pipeline.domain.source_ends): each partition keeps its OpenSources in the parser-state table under
a key no source can have, written with the states.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

import faust
import orjson

from pipeline.contracts import packing
from pipeline.domain.aggregate import ObservationBatch
from pipeline.domain.config import FormatConfig, PolicyConfig
from pipeline.domain.events import MessageTrace, ParseError, SourcePosition, TraceGroup, epoch_ms
from pipeline.domain.lines import LineRun, cut_at_long_lines, long_line, packed_runs, too_long
from pipeline.domain.parsers import dispatch, envelope
from pipeline.domain.parsers.dispatch import SourceState
from pipeline.domain.parsers.msgtrk_rows import TrackingRows
from pipeline.domain.source_ends import OpenSources
from pipeline.streaming.state_bounds import HELD_ROWS_BYTES
from pipeline.streaming.tables import TableBatch, TableOpenMessages


class OneLine(NamedTuple):
    """A record that holds one line, as most shippers send them: bare, or in a JSON envelope that
    names its file (a tuple: there is one per line). `text` is the line, `value` the record."""

    topic: str
    offset: int
    value: bytes
    text: bytes
    line: int | None
    byte: int | None
    reference: datetime | None


class BareLines(NamedTuple):
    """One-line records of one source at consecutive raw offsets from `offset` on, as the repacker
    joined them: `data` is the lines, each ending in \\n; `unwrapped` what their envelopes said, if
    they came in envelopes."""

    topic: str
    offset: int
    data: bytes
    lines: int
    reference: datetime | None
    unwrapped: packing.Unwrapped | None = None

    def line(self, index: int) -> bytes:
        return self.data.split(b"\n", index + 1)[index]

    def position(self, index: int, source: str) -> SourcePosition:
        """Where a line was: as its envelope said, else the source (the record key) alone."""
        if self.unwrapped is None:
            return SourcePosition(source)
        return SourcePosition(self.unwrapped.source, self.unwrapped.numbers[index], self.unwrapped.places[index])

    def part(self, first: int, start: int, end: int) -> BareLines:
        """The lines in data[start:end], the first of which is line `first` (from 0)."""
        count = self.data.count(b"\n", start, end)
        unwrapped = self.unwrapped
        if unwrapped is not None:
            unwrapped = unwrapped._replace(numbers=unwrapped.numbers[first:first + count],
                                           places=unwrapped.places[first:first + count])
        return BareLines(self.topic, self.offset + first, self.data[start:end], count, self.reference, unwrapped)

    def after(self, offset: int) -> BareLines:
        """The lines past raw offset `offset` (a repacker that restarted may join them otherwise)."""
        skipped = offset + 1 - self.offset
        rest = self.data.split(b"\n", skipped)[skipped]
        unwrapped = self.unwrapped
        if unwrapped is not None:
            unwrapped = unwrapped._replace(numbers=unwrapped.numbers[skipped:], places=unwrapped.places[skipped:])
        return BareLines(self.topic, offset + 1, rest, self.lines - skipped, self.reference, unwrapped)


@dataclass
class StoredSource:
    """The value of a source in the parser-state table: its parser state, and the raw record
    (partition, offset) it had read up to when the state last changed (None: stored before that
    was kept)."""

    state: SourceState
    read: tuple[int, int] | None = None

    @classmethod
    def decode(cls, data: bytes) -> StoredSource:
        stored = orjson.loads(data)
        read = stored.pop("read", None)
        return cls(SourceState.from_json(stored), None if read is None else (read[0], read[1]))

    def encode(self) -> bytes:
        stored = self.state.to_json()
        if self.read is not None:
            stored["read"] = list(self.read)
        return orjson.dumps(stored)


@dataclass(frozen=True)
class Origin:
    """The Kafka record a line travelled in; `raw` is the record's value when it held one line (the
    line alone when the repacker took it out of its JSON envelope)."""

    topic: str
    partition: int
    offset: int
    raw: bytes | None = None


class RawBatch:
    """One batch of mail.logs.raw records (add them, then `parse`). Also the parsers' ParseOutput."""

    def __init__(self, parser_states: faust.Table, open_messages: faust.Table, config: PolicyConfig,
                 formats: FormatConfig = FormatConfig(), source_idle_ms: int = 0):
        self.observations = ObservationBatch(config)
        self.formats = formats
        self.source_idle_ms = source_idle_ms
        self.errors: list[ParseError] = []
        # Lines parsed per format (of their source; "unknown" until a line tells it), for the metrics.
        self.lines: dict[str, int] = {}
        self.states = TableBatch(parser_states, decode=StoredSource.decode, encode=StoredSource.encode)
        # The partitions' OpenSources, in the same table under keys no source has.
        self.open_sources = TableBatch(parser_states)
        self.open_messages = TableBatch(open_messages)
        self._origin: Origin | None = None
        # Each source's runs of the batch, with the event that brought them and their raw offset.
        self._runs: dict[tuple[int, str], list[tuple[faust.EventT, int, LineRun | OneLine | BareLines]]] = {}
        # The offset of the batch's last record of lines per partition (what the quiet timer
        # watches); the batch's last event per partition, the newest quiet marker's offset, and the
        # newest event time each source's lines carried.
        self.line_offsets: dict[int, int] = {}
        self._last_events: dict[int, faust.EventT] = {}
        self._quiet: dict[int, int] = {}
        self._newest: dict[str, datetime] = {}

    def add(self, event: faust.EventT) -> None:
        message = event.message
        self._last_events[message.partition] = event
        through = packing.quiet_through(message.headers)
        if through is not None:
            self._quiet[message.partition] = max(through, self._quiet.get(message.partition, through))
            return
        self.line_offsets[message.partition] = message.offset
        reference = datetime.fromtimestamp(message.timestamp, tz=UTC) if message.timestamp else None
        repacked = packing.repacked_segments(message.headers)
        if repacked is None:
            key = (message.key or b"").decode("utf-8", "replace")
            self._add_record(event, message.topic, message.offset, key, message.value or b"",
                             packing.packed_position(message.headers), reference)
            return
        raw_topic, segments = repacked
        value = message.value or b""
        partition = message.partition
        for key, raw_offset, start, end, first_line, first_offset, lines, unwrapped in segments:
            if lines:
                source = unwrapped.source if unwrapped else key or f"{raw_topic}/{partition}"
                joined = BareLines(raw_topic, raw_offset, value[start:end], lines, reference, unwrapped)
                for piece in self._fitting(joined, partition, source):
                    self._runs.setdefault((partition, source), []).append(
                        (event, piece.offset + piece.lines - 1, piece))
                continue
            self._add_record(event, raw_topic, raw_offset, key, value[start:end],
                             (first_line, first_offset) if first_line is not None else None, reference)

    def _add_record(self, event: faust.EventT, topic: str, offset: int, key: str, value: bytes,
                    packed: tuple[int, int | None] | None, reference: datetime | None) -> None:
        """One raw record (as it came, or out of a repacked one) of the event's partition."""
        partition = event.message.partition
        source = key or f"{topic}/{partition}"
        max_line_bytes = self.formats.max_line_bytes
        # A record of one line too long is not even read as an envelope: its size bounds the line's.
        if packed is None and len(value) > max_line_bytes:
            what = "line" if packing.is_bare_line(value) else "record"
            self.errors.append(ParseError(SourcePosition(source), too_long(len(value), max_line_bytes, what),
                                          origin=Origin(topic, partition, offset)))
            return
        # One line (kcat, rsyslog, Filebeat): joined with the source's next ones into one run at `parse`.
        if packed is None and packing.is_bare_line(value):
            self._runs.setdefault((partition, source), []).append(
                (event, offset, OneLine(topic, offset, value, value, None, None, reference)))
            return
        if packed is None and (inside := envelope.one_line(value)) is not None:
            text, file, number, byte = inside
            self._runs.setdefault((partition, file), []).append(
                (event, offset, OneLine(topic, offset, value, text, number, byte, reference)))
            return
        parts: list[LineRun | ParseError] = []
        if packed is not None:
            origin = Origin(topic, partition, offset)
            for part in packed_runs(source, value, *packed, reference, max_line_bytes, origin):
                parts += envelope.unwrap_run(part) if isinstance(part, LineRun) else [part]
        else:
            origin = Origin(topic, partition, offset, value)
            unwrapped = envelope.unwrap(value, SourcePosition(source))
            if isinstance(unwrapped, ParseError):
                parts = [replace(unwrapped, origin=origin)]
            else:
                line, position = unwrapped
                parts = [LineRun.of_lines(position.source, [line], [position], reference, [origin])]
        for part in parts:
            if isinstance(part, ParseError):
                self.errors.append(part)
            else:
                self._runs.setdefault((partition, part.source), []).append((event, offset, part))

    def _fitting(self, lines: BareLines, partition: int, source: str) -> list[BareLines]:
        """`lines` without those longer than `formats.max_line_bytes`, each of which is an error."""
        max_line_bytes = self.formats.max_line_bytes
        if long_line(lines.data, max_line_bytes) is None:
            return [lines]
        pieces = []
        for start, end, before, too_long_line in cut_at_long_lines(lines.data, max_line_bytes):
            if too_long_line:
                self.errors.append(ParseError(lines.position(before, source), too_long(end - start, max_line_bytes),
                                              origin=Origin(lines.topic, partition, lines.offset + before)))
            else:
                pieces.append(lines.part(before, start, end))
        return pieces

    def parse(self) -> None:
        rows = TrackingRows(max_held_bytes=HELD_ROWS_BYTES)
        parsed = []
        for (partition, source), runs in self._runs.items():
            event, last_offset = runs[-1][0], runs[-1][1]
            key = source.encode("utf-8")
            stored: StoredSource | None = self.states.get(key, event)
            state, read = (stored.state, stored.read) if stored else (None, None)
            before = None if state is None else orjson.dumps(state.to_json())
            # Raw offsets: a repacker that restarted forwards again what it had not committed.
            fresh = [run for _, offset, run in runs if read is None or read[0] != partition or offset > read[1]]
            if read is not None and read[0] == partition:
                fresh = [run.after(read[1]) if isinstance(run, BareLines) and run.offset <= read[1] else run
                         for run in fresh]
            store = TableOpenMessages(self.open_messages, source, event)
            for run in _joined(_one_lines_joined(source, partition, fresh)):
                # What a parser rejects without naming a line (a header block ended with no date)
                # is charged to the run's last record.
                self._origin = run.origin(len(run) - 1)
                state = dispatch.parse_run(state, run, self, store, rows, self.formats)
                format_name = state.format or "unknown"
                self.lines[format_name] = self.lines.get(format_name, 0) + len(run)
            parsed.append((key, state, before, partition, event, last_offset))
        # Tracking-log rows are read now, and may teach the states host names.
        rows.flush(self)
        for key, state, before, partition, event, last_offset in parsed:
            # Unchanged (data rows of a tracking log, say), the state needs no write: reading the
            # same records again from the same state gives the same results.
            if state is not None and orjson.dumps(state.to_json()) != before:
                self.states.put(key, StoredSource(state, (partition, last_offset)), event)
        if self.source_idle_ms > 0:
            self._end_idle_sources()

    def _end_idle_sources(self) -> None:
        touched: dict[int, dict[str, int]] = {}
        for (partition, source), runs in self._runs.items():
            touched.setdefault(partition, {})[source] = runs[-1][0].message.offset
        for partition, event in self._last_events.items():
            key = open_sources_key(partition)
            stored = self.open_sources.get(key, event)
            open_sources = OpenSources.from_json(stored)
            sources = touched.get(partition, {})
            states = {source: self._state(source, event) for source in sources}
            times: list[int | None] = [epoch_ms(self._newest[s]) for s in sources if s in self._newest]
            times += [dispatch.held_newest_ms(state) for state in states.values()]
            open_sources.advance(max((t for t in times if t is not None), default=None))
            for source, offset in sources.items():
                open_sources.touched(source, dispatch.holds(states[source]), offset)
            for source in open_sources.ended(self.source_idle_ms, self._quiet.get(partition)):
                self._end_source(source, partition, event)
            if (after := open_sources.to_json()) != stored:
                self.open_sources.put(key, after, event)

    def _state(self, source: str, event: faust.EventT) -> SourceState | None:
        stored: StoredSource | None = self.states.get(source.encode("utf-8"), event)
        return None if stored is None else stored.state

    def _end_source(self, source: str, partition: int, event: faust.EventT) -> None:
        """What `evaluate` does at the end of a file, with the source's stored state (its raw
        offset as it was)."""
        key = source.encode("utf-8")
        stored: StoredSource | None = self.states.get(key, event)
        if stored is None:
            return
        self._origin = Origin(event.message.topic, partition, event.message.offset)
        dispatch.finish(stored.state, source, self, TableOpenMessages(self.open_messages, source, event))
        self.states.put(key, stored, event)

    # ParseOutput
    def trace(self, trace: MessageTrace) -> None:
        self._saw(trace.position.source, trace)
        self.observations.add_trace(trace)

    def group(self, group: TraceGroup) -> None:
        self._saw(group.template.position.source, group.template)
        self.observations.add_group(group)

    def _saw(self, source: str, trace: MessageTrace) -> None:
        # Compared as datetimes (all in UTC): epoch_ms once per source, at the end of the batch.
        newest = self._newest.get(source)
        if newest is None or trace.event_time > newest:
            self._newest[source] = trace.event_time

    def error(self, error: ParseError) -> None:
        self.errors.append(error if error.origin is not None else replace(error, origin=self._origin))


def open_sources_key(partition: int) -> bytes:
    """Where a partition's OpenSources are kept: sources are named by text, never starting with NUL."""
    return b"\0open-sources/%d" % partition


class _JoinedOrigins(Sequence[Origin]):
    """The Origin of each line of joined one-line records, made only for the lines that ask (bad
    ones). `starts` holds the index of each piece's first line."""

    __slots__ = ("partition", "pieces", "starts")

    def __init__(self, partition: int, pieces: list[OneLine | BareLines], starts: list[int]):
        self.partition, self.pieces, self.starts = partition, pieces, starts

    def __getitem__(self, index: int) -> Origin:  # type: ignore[override]  # no slices asked
        at = bisect_right(self.starts, index) - 1
        piece = self.pieces[at]
        if isinstance(piece, OneLine):
            return Origin(piece.topic, self.partition, piece.offset, piece.value)
        within = index - self.starts[at]
        return Origin(piece.topic, self.partition, piece.offset + within, piece.line(within))

    def __len__(self) -> int:
        return self.starts[-1] + _lines_in(self.pieces[-1])


class _JoinedPositions(Sequence[SourcePosition]):
    """The position each envelope gave its line (none for a bare line), made only when asked."""

    __slots__ = ("source", "origins")

    def __init__(self, source: str, origins: _JoinedOrigins):
        self.source, self.origins = source, origins

    def __getitem__(self, index: int) -> SourcePosition:  # type: ignore[override]  # no slices asked
        at = bisect_right(self.origins.starts, index) - 1
        piece = self.origins.pieces[at]
        if isinstance(piece, OneLine):
            return SourcePosition(self.source, piece.line, piece.byte)
        if piece.unwrapped:
            within = index - self.origins.starts[at]
            return SourcePosition(self.source, piece.unwrapped.numbers[within], piece.unwrapped.places[within])
        return SourcePosition(self.source)

    def __len__(self) -> int:
        return len(self.origins)


def _lines_in(piece: OneLine | BareLines) -> int:
    return piece.lines if isinstance(piece, BareLines) else 1


def _one_lines_joined(source: str, partition: int, runs: list[LineRun | OneLine | BareLines]) -> list[LineRun]:
    """Consecutive one-line records as one run of contiguous bytes, which the parsers take as they
    take packed records (the tracking-log reader parses the bytes at once); each line keeps the
    position its envelope gave it and its record."""
    out: list[LineRun] = []
    pieces: list[OneLine | BareLines] = []

    def close() -> None:
        if pieces:
            reference = max((piece.reference for piece in pieces if piece.reference), default=None)
            data = b"".join([piece.data if isinstance(piece, BareLines) else piece.text + b"\n" for piece in pieces])
            starts, at = [], 0
            for piece in pieces:
                starts.append(at)
                at += _lines_in(piece)
            origins = _JoinedOrigins(partition, list(pieces), starts)
            out.append(LineRun(source, None, reference, raw=data, positions=_JoinedPositions(source, origins),
                               origins=origins))
            pieces.clear()

    for run in runs:
        if isinstance(run, LineRun):
            close()
            out.append(run)
        else:
            pieces.append(run)
    close()
    return out


def _joined(runs: list[LineRun]) -> list[LineRun]:
    """The batch's runs of one source joined where they can be: packed runs that follow on from
    each other, and one-line runs."""
    out: list[LineRun] = []
    group: list[LineRun] = []
    for run in runs:
        if group and (run.raw_bytes() is None) != (group[-1].raw_bytes() is None):
            out.append(LineRun.concatenated(group))
            group = []
        group.append(run)
    if group:
        out.append(LineRun.concatenated(group))
    return out
