"""Exchange Online message trace exports: Get-MessageTrace(V2) Export-Csv, and the historical
search / modern EAC downloads (summary, enhanced summary, extended report).

They carry IPs, host names and connectors but never a build. The first line names the columns
(quoted or not, any order), so every row is read by column name.
"""
from __future__ import annotations

import csv
import re
from datetime import datetime, timezone

from pipeline.domain.config import FormatConfig
from pipeline.domain.events import MessageTrace, ParseError
from pipeline.domain.lines import LineRun

FORMAT = "exo_trace"

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
}
_SIGNATURE = {"date_time_utc", "origin_timestamp_utc", "origin_timestamp", "messagetraceid", "network_message_id"}
_SEVEN_DIGITS = re.compile(r"(\.\d{6})\d+")
_US_TIME_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p")


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


def initial_state() -> dict:
    return {"columns": None}


def parse(state: dict, run: LineRun, start: int, end: int, out, formats: FormatConfig = FormatConfig()) -> None:
    lines = run.lines
    for index in range(start, end):
        text = lines[index].lstrip("\ufeff").rstrip("\r\n")
        if not text.strip() or text.startswith(_POWERSHELL_TYPE):
            continue
        if state["columns"] is None or looks_like(text):
            # The header row; a repeated one (exports concatenated) replaces the previous one.
            state["columns"] = header_columns(text)
            continue
        try:
            values = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            out.error(run.error(index, f"broken CSV quoting: {exc}"))
            continue
        columns = state["columns"]
        if len(values) != len(columns):
            out.error(run.error(index, f"{len(values)} values for the {len(columns)} columns of the header row"))
            continue
        row = dict(zip(columns, values))
        result = _trace({name: _pick(row, options) for name, options in _COLUMNS.items()}, run, index)
        if isinstance(result, ParseError):
            out.error(result)
        else:
            out.trace(result)


def _pick(row: dict[str, str], options: tuple[str, ...]) -> tuple[str, str] | None:
    return next(((name, row[name].strip()) for name in options if row.get(name, "").strip()), None)


def _trace(fields: dict, run: LineRun, index: int) -> MessageTrace | ParseError:
    if fields["time"] is None:
        return run.error(index, "no time column has a value", field="date_time_utc")
    column, stamp = fields["time"]
    event_time = parse_time(stamp)
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


def parse_time(stamp: str) -> datetime | None:
    """ISO-8601 (downloads) or the US culture format Export-Csv writes ("2/10/2026 8:14:03 AM"); UTC."""
    try:
        # Downloads write 7 fractional digits (.NET ticks); Python reads at most 6.
        moment = datetime.fromisoformat(_SEVEN_DIGITS.sub(r"\1", stamp.replace("Z", "+00:00")))
    except ValueError:
        moment = None
        for pattern in _US_TIME_FORMATS:
            try:
                moment = datetime.strptime(stamp, pattern)
                break
            except ValueError:
                continue
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
