"""The data rows of message tracking logs, read column-wise and a batch at a time.

TrackingRows.flush hands the queued rows of every source of a batch that share a column layout to
Apache Arrow's CSV reader in one call, converts times and sizes per column, and turns rows that
agree on what identity reads (source, writing server, build, org, connector) into one TraceGroup,
with one entry per message. A row that does not convert, or whose writing server's name is no
host name, is reported on its own and the rest goes on.

Short writer names are joined to their FQDN as identity_writers says: the names a segment's rows
teach are found column-wise, and a segment whose order matters (a short writer, a name that
changes) goes to identity_writers.qualify_rows row by row. The rows it holds back for their
writer's FQDN are queued again, in a later flush, once they go.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.domain import hostnames
from pipeline.domain.events import (
    MessageTrace,
    ParseError,
    SourcePosition,
    TraceGroup,
    epoch_ms,
    from_epoch_ms,
    message_key,
)
from pipeline.domain.identity_writers import HeldRows, first_label, is_short, qualify_rows
from pipeline.domain.parsers.msgtrk import (
    EXCHANGE_2007_VERSION,
    FORMAT,
    LAYOUTS,
    MAX_KNOWN_HOSTS,
    PRODUCT_VERSIONS,
    Segment,
    TrackingState,
    no_layout,
    version_of_rows,
    writer_build,
)

_SEND_EVENTS = pa.array(["SEND", "SENDEXTERNAL"])
# The columns identity and the traffic tables read; the others are never converted.
_READ = ("date-time", "client-hostname", "server-hostname", "event-id", "message-id", "total-bytes",
         "tenant-id", "connector-id", "schema-version")
_TIME = pa.timestamp("ms", tz="UTC")
_UNCLOSED = "broken CSV quoting: a quoted value is not closed"


class TrackingRows:
    """The data rows of a batch, queued by column layout until `flush`. Rows after `until_ms`
    (`evaluate --at`) are left out. `max_held_bytes`: how much row text a file's parser state may
    hold back for its writer's FQDN, as the caller stores the state (see identity_writers.HeldRows;
    None: no bound)."""

    def __init__(self, until_ms: int | None = None, max_held_bytes: int | None = None) -> None:
        self._layouts: dict[tuple[str, ...], list[Segment]] = {}
        self._until_ms = until_ms
        self._max_held_bytes = max_held_bytes
        # During a flush: the held rows of the files read, by the identity of their parser state.
        self._held: dict[int, HeldRows] = {}
        self._ended: list[tuple[TrackingState, str]] = []

    def flush(self, out) -> None:
        # Rows without header lines that have another version's number of values come back under
        # that version's columns, and are read after the others; so do held rows that go.
        while self._layouts or self._ended:
            if self._layouts:
                fields = next(iter(self._layouts))
                _Read(list(fields), self._layouts.pop(fields), out, self._until_ms, self).emit()
            else:
                # Every row of a file that ended is read: what it still holds goes as it is.
                held = self.held(*self._ended.pop(0), create=False)
                if held is not None:
                    held.release_all(self.add)
        self._held.clear()

    def add(self, fields: list[str], segment: Segment) -> None:
        self._layouts.setdefault(tuple(fields), []).append(segment)

    def end_file(self, file: TrackingState, source: str) -> None:
        """The file whose parser state is `file` ended (a new #Software line, the end of the
        source): the rows it holds go as they are, after the rows queued so far are read."""
        self._ended.append((file, source))

    def held(self, file: TrackingState, source: str, create: bool) -> HeldRows | None:
        """The rows the file holds; None when it holds none and none are to be held (`create`)."""
        held = self._held.get(id(file))
        if held is None and (create or file.held is not None):
            held = self._held[id(file)] = HeldRows(file, source, self._max_held_bytes)
        return held


class _Read:
    """One CSV read of every queued segment with the same columns, and what follows from it."""

    def __init__(self, fields: list[str], segments: list[Segment], out, until_ms: int | None, rows: TrackingRows):
        self.fields, self.segments, self.out, self.until_ms, self.rows = fields, segments, out, until_ms, rows
        self.errors: list[ParseError] = []

    def emit(self) -> None:
        rows = self._rows()
        if rows.num_rows:
            self._groups(rows)
        for error in sorted(self.errors, key=lambda e: (e.position.source, e.position.line or 0)):
            self.out.error(error)

    def _rows(self) -> pa.Table:
        """The wanted columns of every kept line, as strings; segments keep only the lines read."""
        read = _csv(self.fields, self._texts())
        kept = sum(len(s.kept) for s in self.segments)
        if not (read is not None and read[0].num_rows + len(read[1]) == kept
                and self._leave_out(read[1], read[0].num_rows, settle=False)):
            # The reader did not find a row per line: bytes read as they were held empty lines, a
            # quote left open made it run on into the next line, or a carriage return inside a
            # line ended it early; or it refused bytes that are not UTF-8. Leave out empty lines,
            # set the broken ones aside (no value spans lines in these logs), and read again, line
            # by line, the lines as decoded (bytes that are not UTF-8 replaced).
            for segment in self.segments:
                lines = segment.run.lines
                segment.kept = [i for i in segment.kept if lines[i] and not lines[i].isspace()]
                broken = {i: reason for i in segment.kept if (reason := _broken(lines[i]))}
                self.errors += [segment.run.error(i, broken[i]) for i in sorted(broken)]
                segment.kept = [i for i in segment.kept if i not in broken]
            read = _csv(self.fields, self._texts())
            if read is None:  # decoded text is UTF-8: nothing is known to get here; lose no line if it does
                for segment in self.segments:
                    self.errors += [segment.run.error(i, "the CSV reader refused the line") for i in segment.kept]
                    segment.kept = []
                read = pa.schema({f: pa.string() for f in _READ if f in self.fields}).empty_table(), []
            self._leave_out(read[1], read[0].num_rows, settle=True)
        rows = read[0]
        self.starts = []
        total = 0
        for segment in self.segments:
            self.starts.append(total)
            total += len(segment.kept)
        return rows

    def _leave_out(self, invalid: list[tuple[str, int]], rows: int, settle: bool) -> bool:
        """Take the rows the reader skipped out of the segments, as errors. The reader names them by
        their text (numbers are unknown when it reads in parallel). False, changing nothing, when
        the texts do not come out even with the rows (unless `settle`: after a line-by-line check).
        Rows without header lines that have the values of another version are moved to its columns."""
        if not invalid:
            return settle or sum(len(segment.kept) for segment in self.segments) == rows
        pending = Counter(text.rstrip("\r") for text, _ in invalid)
        values = {text.rstrip("\r"): count for text, count in invalid}
        kept_by_segment, errors, moves = [], [], []
        for segment in self.segments:
            kept: list[int] = []
            moved: dict[int, list[int]] = {}
            for index in segment.kept:
                line = segment.run.lines[index].rstrip("\r")
                if pending.get(line):
                    pending[line] -= 1
                    count = values[line]
                    if not line.strip():  # a line of blanks is no row (read from bytes, it reached the reader)
                        continue
                    if line.count('"') % 2:
                        errors.append(segment.run.error(index, _UNCLOSED))
                    elif not segment.inferred:
                        errors.append(segment.run.error(
                            index, f"{count} values for the {len(self.fields)} columns of #Fields"))
                    elif count in LAYOUTS:
                        moved.setdefault(count, []).append(index)
                    else:
                        errors.append(segment.run.error(index, no_layout(count)))
                else:
                    kept.append(index)
            kept_by_segment.append(kept)
            # Moved rows name their own product where their columns do (not the first row's).
            moves += [(LAYOUTS[count], Segment(segment.run, indexes, _moved_version(segment.version, LAYOUTS[count]),
                                               segment.hosts, inferred=True, file=segment.file))
                      for count, indexes in moved.items()]
        if not settle and sum(len(k) for k in kept_by_segment) != rows:
            return False
        for segment, kept in zip(self.segments, kept_by_segment, strict=True):
            segment.kept = kept
        self.errors += errors
        for fields, segment in moves:
            self.rows.add(list(fields), segment)
        return True

    def _texts(self) -> bytes:
        pieces: list[bytes] = []
        for segment in self.segments:
            if segment.raw is not None and isinstance(segment.kept, range):
                pieces.append(segment.raw)
            else:
                lines = segment.run.lines
                pieces.append("\n".join([lines[i] for i in segment.kept]).encode("utf-8"))
        # A piece may end with its line end: the empty line between is skipped by the reader.
        return b"\n".join(pieces)

    def _error(self, row: int, reason: str, field: str) -> None:
        number = bisect_right(self.starts, row) - 1
        segment = self.segments[number]
        self.errors.append(segment.run.error(segment.kept[row - self.starts[number]], reason, field=field))

    def _groups(self, rows: pa.Table) -> None:
        count = rows.num_rows

        def column(name: str) -> pa.Array:
            if name in rows.column_names:
                return rows.column(name).combine_chunks()
            return pa.array([""] * count, pa.string())

        ids: list[int] = []
        for number, segment in enumerate(self.segments):
            ids += [number] * len(segment.kept)
        segment_ids = pa.array(ids, pa.int32())
        times, time_ok = self._times(column("date-time"))
        sizes, size_ok = self._sizes(column("total-bytes"), time_ok)
        send = pc.is_in(pc.utf8_upper(column("event-id")), value_set=_SEND_EVENTS)
        client, server = pc.utf8_lower(column("client-hostname")), pc.utf8_lower(column("server-hostname"))
        good = pc.and_(time_ok, size_ok)
        if self.until_ms is not None:
            in_time = pc.fill_null(pc.and_(good, pc.less_equal(times, self.until_ms)), False)
        else:
            in_time = good
        writer, unnamed, held = self._qualified(segment_ids, pc.if_else(send, client, server), client, server, times,
                                                in_time)
        versions = pc.take(pa.array([s.version for s in self.segments], pa.string()), segment_ids)
        if "schema-version" in rows.column_names:
            stated = column("schema-version")
            build = pc.if_else(pc.equal(stated, ""), versions, stated)
        else:
            build = versions
        # What a group shares, each field by its dictionary code: grouping hashes small integers
        # rather than strings.
        shared = {name: pc.dictionary_encode(values, null_encoding="encode") for name, values in (
            ("writer", writer), ("build", build), ("org", column("tenant-id")),
            ("connector", pc.utf8_lower(column("connector-id"))))}
        table = pa.table({
            "segment": segment_ids, **{name: codes.indices for name, codes in shared.items()}, "time": times,
            "message_id": column("message-id"), "size": sizes,
        })
        if unnamed:
            good = pc.and_(good, self._named(writer, unnamed, send, good))
        if self.until_ms is not None:
            good = pc.and_(good, in_time)
        if held is not None:
            good = pc.and_(good, pc.invert(held))
        if not pc.all(good).as_py():
            table = table.filter(good)
        if pc.any(pc.equal(table.column("message_id"), "")).as_py():
            columns = (table.column(name).to_pylist() for name in ("message_id", "time", "size"))
            table = table.set_column(table.schema.get_field_index("message_id"), "message_id", pa.array([
                key or message_key(None, t, s) for key, t, s in zip(*columns, strict=True)
            ], pa.string()))
        # A message has several rows (RECEIVE, DELIVER, SEND, ...): one entry per message and group,
        # with its latest time, and the number of rows beside it.
        keys = ["segment", "writer", "build", "org", "connector"]
        messages = table.group_by(keys + ["message_id"], use_threads=False).aggregate(
            [("time", "min"), ("time", "max"), ("size", "max"), ("time", "count")])
        grouped = messages.group_by(keys, use_threads=False).aggregate(
            [("message_id", "list"), ("time_max", "list"), ("size_max", "list"), ("time_min", "min"),
             ("time_max", "max"), ("time_count", "sum")])
        values = {name: codes.dictionary.to_pylist() for name, codes in shared.items()}
        for group in grouped.to_pylist():
            writer_name, build_text, org, connector = (values[name][group[name]] for name in shared)
            template = MessageTrace(
                event_time=from_epoch_ms(group["time_max_max"]), source_format=FORMAT,
                position=SourcePosition(self.segments[group["segment"]].run.source),
                logged_by=writer_name or None, logged_by_build=_stated_build(build_text),
                org=org or None, connector_id=connector or None,
            )
            self.out.group(TraceGroup(template, group["time_min_min"], group["time_count_sum"], group["time_max_list"],
                                      group["message_id_list"], group["size_max_list"]))

    def _times(self, stamps: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Epoch milliseconds per row, and which rows had a time that reads."""
        try:
            times = pc.cast(stamps, _TIME).cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Some value is not a time Arrow reads: convert row by row, and say which.
            values = []
            for row, stamp in enumerate(stamps.to_pylist()):
                moment = _time_ms(stamp)
                if moment is None:
                    self._error(row, f"{stamp!r} is not an ISO-8601 time", "date-time")
                values.append(moment)
            times = pa.array(values, pa.int64())
        return times, pc.is_valid(times)

    def _sizes(self, values: pa.Array, time_ok: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Bytes per row (0 where the column is empty), and which rows had a size that reads."""
        empty = pc.equal(values, "")
        ok = pc.or_(empty, pc.utf8_is_digit(values))
        if pc.all(ok).as_py():
            try:
                return pc.cast(pc.if_else(empty, "0", values), pa.int64()), ok
            except pa.ArrowInvalid:  # more digits than a 64-bit count holds
                pass
        sizes, fine = [], []
        for row, (text, readable, timed) in enumerate(zip(values.to_pylist(), ok.to_pylist(), time_ok.to_pylist(),
                                                           strict=True)):
            size = int(text) if text and readable else 0
            valid = readable and size < 2**63
            if not valid and timed:
                self._error(row, f"{text!r} is not a byte count", "total-bytes")
            sizes.append(size if valid else 0)
            fine.append(valid)
        return pa.array(sizes, pa.int64()), pa.array(fine)

    def _named(self, writer: pa.Array, unnamed: dict[str, str], send: pa.Array, readable: pa.Array) -> pa.Array:
        """Which rows name their writing server with a host name; the others are errors (unless
        they were already, for their time or size)."""
        invalid = pc.is_in(writer, value_set=pa.array(list(unnamed), pa.string()))
        for row in pc.indices_nonzero(pc.and_(invalid, readable)).to_pylist():
            field = "client-hostname" if send[row].as_py() else "server-hostname"
            self._error(row, unnamed[writer[row].as_py()], field)
        return pc.invert(invalid)

    def _qualified(self, segment_ids: pa.Array, writer: pa.Array, client: pa.Array, server: pa.Array, times: pa.Array,
                   holdable: pa.Array) -> tuple[pa.Array, dict[str, str], pa.Array | None]:
        """Join short writer names to the FQDN with the same first label seen earlier in the same
        file (or in the same row), and learn the FQDNs of these rows (first label -> FQDN, the
        latest one wins). Also the writer names that are no host name, with why: the names are
        checked once per segment and value, not per row, and are never learnt. And which rows
        are held (see HeldRows), or None: of the `holdable` ones (those that read, in time), a
        row whose short writer is still unknown."""
        names = pa.table({"segment": segment_ids, "writer": writer, "client": client, "server": server})
        seen: list[list[set[str]]] = [[set(), set(), set()] for _ in self.segments]
        for column_number, name in enumerate(("writer", "client", "server")):
            for pair in names.group_by(["segment", name], use_threads=False).aggregate([]).to_pylist():
                seen[pair["segment"]][column_number].add(pair[name])
        problems = {host: reason for host in set().union(*(values for found in seen for values in found))
                    if host and (reason := hostnames.problem(host))}
        unnamed = {host: problems[host] for found in seen for host in found[0] if host in problems}
        replaced = []
        touched: dict[int, HeldRows] = {}
        for number, segment in enumerate(self.segments):
            start, length = self.starts[number], len(segment.kept)
            learnt: dict[str, set[str]] = {}
            for values in seen[number]:
                for host in values:
                    if (label := first_label(host)) and "." in host and host not in problems:
                        learnt.setdefault(label, set()).add(host)
            hosts = segment.hosts
            short_writer = any(is_short(host) for host in seen[number][0])
            held = None if segment.file is None else self.rows.held(segment.file, segment.run.source, short_writer)
            if held is not None:
                touched[id(held)] = held
            crowded = len(hosts.keys() | learnt.keys()) > MAX_KNOWN_HOSTS
            # A row far newer than a held one lets it go, before the rows after it.
            overdue = held is not None and held.overdue(pc.max(times.slice(start, length)).as_py() or 0)
            if short_writer or crowded or overdue or any(len(found) > 1 for found in learnt.values()):
                # Order decides: go row by row, as a line-by-line reader would.
                replaced.append((start, length, *qualify_rows(
                    self.fields, segment, held, problems, _RowTexts(segment).text,
                    *(a.slice(start, length).to_pylist() for a in (writer, client, server, times, holdable)))))
            else:
                for label, (host,) in learnt.items():
                    if held is not None and label not in hosts:
                        held.resolve(label, host)
                    hosts[label] = host
        for held in touched.values():
            held.end_read(self.rows.add)
        if not replaced:
            return writer, unnamed, None
        pieces, flags, at = [], [], 0
        for start, length, qualified, kept_back in replaced:
            pieces += [writer.slice(at, start - at), pa.array(qualified, pa.string())]
            flags += [pa.repeat(False, start - at), pa.array(kept_back, pa.bool_())]
            at = start + length
        pieces.append(writer.slice(at))
        flags.append(pa.repeat(False, len(writer) - at))
        held_rows = pa.concat_arrays(flags) if any(any(kept_back) for *_, kept_back in replaced) else None
        return pa.concat_arrays(pieces), unnamed, held_rows

class _RowTexts:
    """The texts of a segment's rows, asked for in order: from its bytes when it was read from them
    (a line each), without decoding the rest of its run."""

    def __init__(self, segment: Segment) -> None:
        self.segment, self.row, self.offset = segment, 0, 0

    def text(self, row: int) -> str:
        segment = self.segment
        if segment.raw is None or not isinstance(segment.kept, range):
            return segment.run.lines[segment.kept[row]]
        raw = segment.raw
        while True:
            stop = raw.find(b"\n", self.offset)
            stop = len(raw) if stop < 0 else stop
            start, self.offset, self.row = self.offset, stop + 1, self.row + 1
            if self.row > row:
                return raw[start:stop].decode("utf-8", "replace")


def _csv(fields: list[str], text: bytes) -> tuple[pa.Table, list[tuple[str, int]]] | None:
    """Arrow's CSV reader over the lines: the wanted columns as strings, and the rows it skipped
    (text, number of values) for having the wrong number of values. None when it refuses the text
    (bytes that are not UTF-8: a skipped row's text cannot even be handed to `skip`)."""
    try:
        # Checked first: Arrow would fail to hand a skipped row that is not UTF-8 to `skip` (and
        # print its failure), then refuse the whole text anyway.
        text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    invalid: list[tuple[str, int]] = []

    def skip(row) -> str:
        invalid.append((row.text, row.actual_columns))
        return "skip"

    wanted = [f for f in _READ if f in fields]
    types = {f: pa.string() for f in wanted}
    try:
        rows = pacsv.read_csv(
            pa.py_buffer(text),
            read_options=pacsv.ReadOptions(column_names=fields),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(include_columns=wanted, column_types=types, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" not in str(exc):
            return None
        rows = pa.schema(types).empty_table()  # nothing but line ends
    return rows, invalid


def _broken(line: str) -> str | None:
    """Why a line cannot be one CSV row on its own, if it cannot."""
    if line.count('"') % 2:
        return _UNCLOSED
    if "\r" in line.rstrip("\r"):
        return "a carriage return inside the line"
    return None


def _time_ms(stamp: str) -> int | None:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return epoch_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _stated_build(text: str | None) -> str | None:
    """The writer's build as the template carries it: short form, or a version that names only the
    product (Exchange 2010's constant, header-less Exchange 2007 rows: identity reads it)."""
    if text and text.strip() in PRODUCT_VERSIONS:
        return text.strip()
    return writer_build(text)


def _moved_version(version: str | None, fields: tuple[str, ...]) -> str | None:
    """The version of header-less rows moved to the columns of their own number of values: the
    product those columns name, not the one the first row's columns named."""
    if version is None or version == EXCHANGE_2007_VERSION:
        return version_of_rows(fields)
    return version
