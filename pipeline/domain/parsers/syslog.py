"""Syslog time stamps: RFC 3339 (rsyslog, journald exports) or BSD "Mar  5 10:26:02" without a year.

A BSD stamp takes its year from a reference time (when the shipper read the line, or the file's
modification time): the year that does not put the line more than a day after the reference.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_BSD = re.compile(r"^(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) (?P<rest>.*)$")
_RFC3339 = re.compile(r"^(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?) (?P<rest>.*)$")


def split_stamp(line: str, reference: datetime | None) -> tuple[datetime, str] | str:
    """(UTC time, rest of the line), or why the line has no usable time stamp."""
    if found := _RFC3339.match(line):
        moment = datetime.fromisoformat(found.group("stamp").replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc), found.group("rest")
    if found := _BSD.match(line):
        if reference is None:
            return "syslog time has no year and the line came with no reference time"
        try:
            moment = datetime.strptime(f"{reference.year} {found.group('stamp')}", "%Y %b %d %H:%M:%S")
        except ValueError:
            return f"{found.group('stamp')!r} is not a date"
        moment = moment.replace(tzinfo=timezone.utc)
        if moment > reference + timedelta(days=1):
            moment = moment.replace(year=reference.year - 1)
        return moment, found.group("rest")
    return "no syslog time stamp at the start of the line"
