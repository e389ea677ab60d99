"""Syslog lines, as the MTA logs read here share them.

A syslog line is a time stamp, the host and the program that wrote it, then its message:

    Mar  5 10:26:02 mx1 postfix/smtpd[2012]: ...                  BSD, the day space-padded
    Mar 5 10:26:02 mx1 dovecot: ...                                BSD, the day not padded
    2026-03-05T10:26:02.318211+01:00 mx1 amavis[2210]: ...         RFC 3339 (rsyslog's RSYSLOG_FileFormat)

A BSD stamp has no year: it takes the one of a reference time (when the shipper read the line, or
the file's modification time) that does not put the line more than a day after the reference, both
in the zone of the server that wrote it (formats.syslog_timezone), which stamps without an offset
are in: the year turns there, not in UTC.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache

_BSD = re.compile(r"^(?P<stamp>[A-Z][a-z]{2} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}) (?P<rest>.*)$")
_RFC3339 = re.compile(r"^(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?) (?P<rest>.*)$")
_PROGRAM = re.compile(r"^\S+ (?P<program>[^\s\[:]+)(?:\[\d+\])?: ")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_A_DAY = timedelta(days=1)


def split_stamp(line: str, reference: datetime | None, zone: tzinfo = UTC) -> tuple[datetime, str] | str:
    """(UTC time, rest of the line), or why the line has no usable time stamp. A stamp without an
    offset is a time in `zone`."""
    if found := _RFC3339.match(line):
        moment = datetime.fromisoformat(found.group("stamp").replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=zone)
        return moment.astimezone(UTC), found.group("rest")
    if found := _BSD.match(line):
        if reference is None:
            return "syslog time has no year and the line came with no reference time"
        stamp, rest = found.groups()
        dated = _bsd_time(stamp, reference, zone)
        return (dated, rest) if dated else f"{stamp!r} is not a date"
    return "no syslog time stamp at the start of the line"


@lru_cache(maxsize=4096)
def _bsd_time(stamp: str, reference: datetime, zone: tzinfo) -> datetime | None:
    """The UTC time of the stamp read in `zone`, in the reference's year there, or the year before
    when that would be more than a day after the reference (or is no date, as Feb 29 of a common
    year); None if neither is a date. Lines come many to a second: the answer is kept (strptime
    would cost more than the rest of the line's parsing)."""
    month_name, day, clock = stamp.split()
    month = _MONTHS.get(month_name)
    if month is None:
        return None
    hour, minute, second = (int(part) for part in clock.split(":"))
    year_there = reference.astimezone(zone).year
    for year in (year_there, year_there - 1):
        try:
            moment = datetime(year, month, int(day), hour, minute, second, tzinfo=zone)
        except ValueError:
            continue
        if moment <= reference + _A_DAY:
            return moment.astimezone(UTC)
    return None


def without_stamp(line: str) -> str | None:
    """The line after its syslog time stamp; None if it has none."""
    found = _RFC3339.match(line) or _BSD.match(line)
    return found.group("rest") if found else None


def program(rest: str) -> str | None:
    """The program that wrote a syslog line ("postfix/smtpd", "dovecot"), from the line after its
    stamp; None if that is not "HOST PROGRAM[PID]: MESSAGE" (the [PID] is optional)."""
    found = _PROGRAM.match(rest)
    return found.group("program") if found else None

