"""Received headers: which host stamped each one, with which software build, and when.

A build in a Received header belongs to the host after `by` (the server that received the
message and wrote the header), never to the `from` host.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pipeline.domain.builds import Build

_FOLD = re.compile(r"\r?\n[ \t]+")
_SPACE = re.compile(r"\s+")
_BY = re.compile(r"\bby\s+(?P<by>[^\s;()]+)", re.I)
# What follows a host name in a Received header: a comment, the date, or the next clause. A single
# word followed by anything else is a product's name ("by Forcepoint Email with ESMTP"), not a host.
_AFTER_HOST = re.compile(r"\s*(?:[;(\[]|$|(?:with|id|via|for|from)\b)", re.I)
_FROM = re.compile(r"^\s*from\s+(?P<from>[^\s;()]+)(?:\s+\((?P<comment>[^)]*)\))?", re.I)
_IP_IN_COMMENT = re.compile(r"\[?(?P<ip>(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f:]*:[0-9a-f:.%]+)\]?", re.I)
_EXCHANGE_SMTP = re.compile(
    r"with Microsoft SMTP Server(?:\s+\([^()]*\))?\s+id\s+(?P<build>\d{1,2}\.\d{1,2}\.\d{1,4}\.\d{1,3})"
    r"(?:\s+via\s+(?P<via>Frontend Transport|Mailbox Transport|Proxy Transport))?",
    re.I,
)
_EXCHANGE_MAPI = re.compile(r"with mapi\s+id\s+(?P<build>\d{1,2}\.\d{1,2}\.\d{1,4}\.\d{1,3})", re.I)
# The version may carry a packager's suffix (4.90_1, 4.82_1-5b7a7c0-XX), a compile number (#2) and
# a build note in parentheses ("4.97.1 #2 (Red Hat Linux)"); the version is its numeric part.
_EXIM = re.compile(r"\(Exim (?P<version>\d+\.\d+(?:\.\d+)?)(?:[_ -][^()]*)?(?:\([^()]*\))?\)")
_SENDMAIL = re.compile(r"\((?P<version>\d+\.\d+\.\d+(?:\.\d+)?)/[^)\s]+\)\s+with\s", re.I)
_POSTFIX = re.compile(r"\(Postfix(?:, from userid \d+)?\)")


@dataclass(frozen=True)
class Hop:
    """One Received header, read. Its date is read only when asked for (identity never needs it)."""

    by: str | None
    from_host: str | None
    from_ip: str | None
    build: str | None
    software: str | None
    evidence: str | None
    text: str

    @property
    def received_at(self) -> datetime | None:
        return _date(self.text)


def unfold(value: str) -> str:
    if "\n" not in value and "\t" not in value and "  " not in value:
        return value.strip()
    return _SPACE.sub(" ", _FOLD.sub(" ", value)).strip()


def read_hop(value: str) -> Hop:
    text = unfold(value)
    by = _BY.search(text)
    if by and "." not in by.group("by") and ":" not in by.group("by") and not _AFTER_HOST.match(text, by.end()):
        by = None
    origin = _FROM.search(text)
    ip = None
    if origin and origin.group("comment"):
        found = _IP_IN_COMMENT.search(origin.group("comment"))
        ip = found.group("ip") if found else None
    build, software, evidence = _software(text)
    return Hop(
        by=by.group("by").lower().rstrip(".") if by else None,
        from_host=origin.group("from").lower() if origin else None,
        from_ip=ip,
        build=build,
        software=software,
        evidence=evidence,
        text=text,
    )


def _software(text: str) -> tuple[str | None, str | None, str | None]:
    """(build, non-Exchange product, evidence) stamped in the header."""
    if found := _EXCHANGE_SMTP.search(text):
        return str(Build.parse(found.group("build"))), None, "received-id"
    if found := _EXCHANGE_MAPI.search(text):
        return str(Build.parse(found.group("build"))), None, "mapi-id"
    if found := _EXIM.search(text):
        return found.group("version"), "Exim", "exim-version"
    if found := _SENDMAIL.search(text):
        return found.group("version"), "Sendmail", "sendmail-version"
    if _POSTFIX.search(text):
        return None, "Postfix", "postfix-banner"
    return None, None, None


def _date(text: str) -> datetime | None:
    _, semicolon, stamp = text.rpartition(";")
    if not semicolon:
        return None
    try:
        moment = parsedate_to_datetime(stamp.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # RFC 5322 "-0000": the time is UTC with no statement about the local zone.
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
