"""Exchange Online message trace exports: Get-MessageTrace(V2) Export-Csv, and the historical
search / modern EAC downloads (summary, enhanced summary, extended report).

They carry IPs, host names and connectors but never a build. The first line names the columns
(quoted or not, any order), so every row is read by column name.

The downloads write ISO-8601 times. Export-Csv writes them in the culture of the machine that ran
it: month-first in en-US ("2/10/2026 8:14:03 AM"), day-first in en-GB and many others
("10/02/2026 14:03:22"). The setting formats.exo_date_order says which; "auto" takes the order
from the first date of the file that fits only one of them (a first number above 12 is a day, a
second one above 12 is a day), including the query's StartDate and EndDate columns, which are in
the same culture. A date that fits both before the order is known makes the parser look ahead over
the rest of the run (usually the whole file); when nothing there tells either, the file is read
month-first, as Export-Csv writes by default, and one error says so. The order found is kept in
the source's state for the rest of the file; a row whose date fits only the other order is an
error.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from pipeline.domain.config import FormatConfig
from pipeline.domain.events import MessageTrace, ParseError
from pipeline.domain.lines import LineRun

FORMAT = "exo_trace"
MONTH_FIRST, DAY_FIRST = "month-first", "day-first"

# canonical name -> the column names the different exports use for it (lower case)
_COLUMNS = {
    "time": ("date_time_utc", "origin_timestamp_utc", "origin_timestamp", "received", "date"),
    "client_ip": ("original_client_ip", "client_ip", "fromip"),
    "client_hostname": ("client_hostname",),
    "server_ip": ("server_ip", "toip"),
    "server_hostname": ("server_hostname",),
    "connector_id": ("connector_id",),
    "event_id": ("event_id", "event"),
    "message_id": ("message_id", "messageid"),
    "sender": ("sender_address", "senderaddress"),
    "recipients": ("recipient_address", "recipientaddress", "recipient_status"),
    "total_bytes": ("total_bytes", "size"),
    "org": ("tenant_id", "organization"),
    # Get-MessageTrace's query window: written in the same culture as the times.
    "query_start": ("startdate",),
    "query_end": ("enddate",),
}
_DATE_FIELDS = ("time", "query_start", "query_end")
_SIGNATURE = {"date_time_utc", "origin_timestamp_utc", "origin_timestamp", "messagetraceid", "network_message_id"}
# Every header looks_like accepts names one of these.
_HEADER_NAMES = (*_SIGNATURE, "senderaddress")
_SEVEN_DIGITS = re.compile(r"(\.\d{6})\d+")
# A culture's short date and long time: "2/10/2026 8:14:03 AM", "10/02/2026 14:03:22". .NET on ICU
# writes a narrow no-break space before AM/PM.
_SLASH_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})(?::(\d{2}))?(?:[ \u202f\u00a0]?([AaPp])[Mm])?")
_DOTTED_TIME = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4}) (\d{1,2}):(\d{2})(?::(\d{2}))?")
_SETTING_HINT = 'set exo_date_order = "{order}" in the [formats] settings'


def header_columns(line: str) -> list[str]:
    try:
        cells = next(csv.reader([line.lstrip("\ufeff")]), [])
    except csv.Error:
        return []
    return [c.strip().strip('"').lower() for c in cells]


# Windows PowerShell's Export-Csv writes this line above the header unless -NoTypeInformation.
_POWERSHELL_TYPE = "#TYPE "


def looks_like(line: str) -> bool:
    if line.lstrip("\ufeff").startswith(_POWERSHELL_TYPE):
        return True
    columns = set(header_columns(line))
    return bool(columns & _SIGNATURE) or {"received", "senderaddress", "fromip"} <= columns


def _may_be_header(line: str) -> bool:
    """Whether the line holds a column name that every header looks_like accepts has one of: a cheap
    test that spares data rows the CSV parse of looks_like."""
    lowered = line.lower()
    return any(name in lowered for name in _HEADER_NAMES)


@dataclass
class DateOrder:
    """The order of a file's dates (see _DateOrder): told by `stamp`, a date that fits only that
    order, on `line`; or `assumed` when no date told."""

    order: str
    line: int | None = None
    stamp: str | None = None
    assumed: bool = False

    def to_json(self) -> dict:
        if self.assumed:
            return {"order": self.order, "assumed": True}
        return {"order": self.order, "line": self.line, "stamp": self.stamp}

    @classmethod
    def from_json(cls, data: dict) -> DateOrder:
        return cls(data["order"], data.get("line"), data.get("stamp"), data.get("assumed", False))

    def where(self) -> str:
        """The date that told the order, for an error that names it."""
        return f"line {self.line}: {self.stamp!r}" if self.line is not None else repr(self.stamp)


@dataclass
class ExportState:
    """A source's state while it is a message trace export: the columns of its header row, and the
    order of its dates once known."""

    FORMAT: ClassVar[str] = FORMAT

    columns: list[str] | None = None
    dates: DateOrder | None = None

    def to_json(self) -> dict:
        return {"columns": self.columns, "dates": None if self.dates is None else self.dates.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> ExportState:
        dates = data.get("dates")
        return cls(data["columns"], None if dates is None else DateOrder.from_json(dates))


def parse(state: ExportState, run: LineRun, start: int, end: int, out, formats: FormatConfig = FormatConfig()) -> None:
    dates = _DateOrder(state, formats.exo_date_order, run, end, out)
    for index, fields in _rows(state, run, start, end, out):
        result = _trace(fields, run, index, dates)
        if isinstance(result, ParseError):
            out.error(result)
        else:
            out.trace(result)


def _rows(state: ExportState, run: LineRun, start: int, end: int, out):
    """(index, canonical name -> (column, value) or None) of the data rows among lines start..end.
    Header rows set state.columns (a repeated one, of concatenated exports, replaces the one
    before); rows that cannot be read are reported to `out` unless it is None."""
    lines = run.lines
    picks = _picks(state.columns)
    for index in range(start, end):
        text = lines[index].lstrip("\ufeff").rstrip("\r\n")
        if not text.strip() or text.startswith(_POWERSHELL_TYPE):
            continue
        if state.columns is None or (_may_be_header(text) and looks_like(text)):
            state.columns = header_columns(text)
            picks = _picks(state.columns)
            continue
        try:
            values = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            if out is not None:
                out.error(run.error(index, f"broken CSV quoting: {exc}"))
            continue
        width = len(state.columns)
        if len(values) != width:
            if out is not None:
                out.error(run.error(index, f"{len(values)} values for the {width} columns of the header row"))
            continue
        yield index, {name: _pick(values, options) for name, options in picks.items()}


def _picks(columns: list[str] | None) -> dict[str, tuple[tuple[str, int], ...]]:
    """canonical name -> (column name, position) of the header's columns for it, in preference order."""
    at = {name: i for i, name in reversed(list(enumerate(columns or ())))}
    return {name: tuple((c, at[c]) for c in options if c in at) for name, options in _COLUMNS.items()}


def _pick(values: list[str], options: tuple[tuple[str, int], ...]) -> tuple[str, str] | None:
    for column, at in options:
        value = values[at].strip()
        if value:
            return column, value
    return None


def _trace(fields: dict, run: LineRun, index: int, dates: _DateOrder) -> MessageTrace | ParseError:
    if fields["time"] is None:
        return run.error(index, "no time column has a value", field="date_time_utc")
    column, stamp = fields["time"]
    found = _SLASH_TIME.fullmatch(stamp)
    if found:
        event_time = dates.time(found, fields, index, column)
        if isinstance(event_time, ParseError):
            return event_time
    else:
        event_time = _iso_time(stamp)
    if event_time is None:
        return run.error(index, f"{stamp!r} is not a time", field=column)
    size = fields["total_bytes"][1] if fields["total_bytes"] else ""
    if size and not size.isdigit():
        return run.error(index, f"{size!r} is not a byte count", field=fields["total_bytes"][0])

    def value(name):
        return fields[name][1] if fields[name] else None

    recipients = value("recipients") or ""
    return MessageTrace(
        event_time=event_time,
        source_format=FORMAT,
        position=run.position(index),
        event_id=(value("event_id") or "").upper() or None,
        message_id=value("message_id"),
        sender=value("sender"),
        # recipient_status is "addr##Receive, Deliver;addr2##..." in the enhanced summary.
        recipients=tuple(r.split("##")[0].strip() for r in recipients.split(";") if r.strip()),
        total_bytes=int(size) if size else None,
        client_ip=value("client_ip"),
        client_hostname=(value("client_hostname") or "").lower() or None,
        server_ip=value("server_ip"),
        server_hostname=(value("server_hostname") or "").lower() or None,
        connector_id=value("connector_id"),
        org=(value("org") or "").lower() or None,
    )


class _DateOrder:
    """Reads a run's culture-formatted dates in the order the setting names or the file shows.

    What the file showed is kept in state.dates: the order from a date that fits only that order,
    or month-first, assumed, when no date told.
    """

    def __init__(self, state: ExportState, setting: str, run: LineRun, end: int, out):
        self.state, self.setting, self.run, self.end, self.out = state, setting, run, end, out

    def time(self, found: re.Match, fields: dict, index: int, column: str) -> datetime | ParseError | None:
        stamp = found.group(0)
        if self.setting != "auto":
            moment = _slash_time(found, self.setting)
            if moment is None and _slash_time(found, _other(self.setting)) is not None:
                return self.run.error(index, f"{stamp!r} is not a {self.setting} date (formats.exo_date_order)",
                                      field=column)
            return moment
        known = self.state.dates
        if known is None or known.assumed:
            self._learn(fields, index, column)
            known = self.state.dates
            assert known is not None  # _learn leaves an order, told or assumed
        moment = _slash_time(found, known.order)
        if moment is None and _slash_time(found, _other(known.order)) is not None:
            # learn() took this row's own date if it told: the order came from another line.
            return self.run.error(index, f"{stamp!r} is {_other(known.order)}, but the file's dates are "
                                         f"{known.order} ({known.where()})", field=column)
        return moment

    def _learn(self, fields: dict, index: int, column: str) -> None:
        """Take the order from this row's dates, else (when none is known yet) from the rest of
        the run's, else assume month-first and say so."""
        known = self.state.dates
        told = _told_order(fields)
        if told is None and known is None:
            index, told = self._ahead(index) or (index, None)
        if told is None:
            if known is None:
                self.state.dates = DateOrder(MONTH_FIRST, assumed=True)
                self.out.error(self.run.error(
                    index, f"the file's dates fit month-first and day-first alike (as {fields['time'][1]!r}) and "
                           f"none tells which: read month-first, Export-Csv's default (en-US); if the export "
                           f"came from a day-first culture (en-GB and others), "
                           + _SETTING_HINT.format(order=DAY_FIRST), field=column))
            return
        order, stamp = told
        self.state.dates = DateOrder(order, self.run.line_number(index), stamp)
        if known is not None and known.order != order:
            self.out.error(self.run.error(
                index, f"{stamp!r} is {order}, but earlier rows of the file, whose dates fit either order, were "
                       f"read {known.order}: " + _SETTING_HINT.format(order=order) + " and read the file again",
                field=column))

    def _ahead(self, index: int) -> tuple[int, tuple[str, str]] | None:
        """The first later row of the run whose dates tell the order: (its index, _told_order)."""
        for later, fields in _rows(ExportState(self.state.columns), self.run, index + 1, self.end, None):
            told = _told_order(fields)
            if told is not None:
                return later, told
        return None


def _told_order(fields: dict) -> tuple[str, str] | None:
    """(order, date) of the first of a row's dates that is a date in one order only."""
    for name in _DATE_FIELDS:
        picked = fields[name]
        found = picked and _SLASH_TIME.fullmatch(picked[1])
        if found:
            first, second = int(found.group(1)), int(found.group(2))
            order = DAY_FIRST if first > 12 >= second else MONTH_FIRST if second > 12 >= first else None
            if order is not None and _slash_time(found, order) is not None:
                return order, picked[1]
    return None


def _other(order: str) -> str:
    return DAY_FIRST if order == MONTH_FIRST else MONTH_FIRST



def _slash_time(found: re.Match, order: str) -> datetime | None:
    first, second, year, hour, minute, seconds, half = found.groups()
    month, day = (first, second) if order == MONTH_FIRST else (second, first)
    hour = int(hour)
    if half:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half in "Pp" else 0)
    try:
        return datetime(int(year), int(month), int(day), hour, int(minute), int(seconds or 0), tzinfo=UTC)
    except ValueError:
        return None


def _iso_time(stamp: str) -> datetime | None:
    """ISO-8601, or a dotted culture's date ("10.02.2026 14:03:22", de-DE and others: always day first)."""
    try:
        # Downloads write 7 fractional digits (.NET ticks); Python reads at most 6.
        moment = datetime.fromisoformat(_SEVEN_DIGITS.sub(r"\1", stamp.replace("Z", "+00:00")))
    except ValueError:
        dotted = _DOTTED_TIME.fullmatch(stamp)
        if dotted is None:
            return None
        day, month, year, hour, minute, second = (int(part or 0) for part in dotted.groups())
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
